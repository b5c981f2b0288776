package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proofline/proofline/ledger"
)

var (
	witnessQuorumDesc = prometheus.NewDesc("proofline_witness_quorum",
		"1 when the witnesses' last answers meet the witness policy's quorum; 0 when they do not, and (unless fail-open) no new checkpoint is published.", nil, nil)
	witnessUpDesc = prometheus.NewDesc("proofline_witness_up",
		"1 when the witness's last answer was a cosignature.", []string{"witness"}, nil)
	witnessRefusalsDesc = prometheus.NewDesc("proofline_witness_refusals_total",
		"Answers of a witness that refused to cosign, by reason: inconsistent or rollback (the log forked or was rolled back: alert), unknown_log, untrusted_key, other.",
		[]string{"witness", "reason"}, nil)
	unpublishedDesc = prometheus.NewDesc("proofline_log_unpublished_leaves",
		"Sequenced leaves no published checkpoint covers yet; grows while the witness quorum is unreachable.", nil, nil)
)

// WatchWitnesses reports the log's witnessing: the quorum, each witness's
// last answer, refusals, and the leaves waiting for a cosigned checkpoint.
func (r *Registry) WatchWitnesses(l *ledger.Log) { r.reg.MustRegister(&witnessCollector{log: l}) }

type witnessCollector struct{ log *ledger.Log }

func (c *witnessCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- witnessQuorumDesc
	ch <- witnessUpDesc
	ch <- witnessRefusalsDesc
	ch <- unpublishedDesc
}

func (c *witnessCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.log.WitnessStatus()
	ch <- prometheus.MustNewConstMetric(witnessQuorumDesc, prometheus.GaugeValue, b2f(s.Quorum))
	for _, w := range s.Witnesses {
		ch <- prometheus.MustNewConstMetric(witnessUpDesc, prometheus.GaugeValue, b2f(w.Up), w.Name)
		for _, reason := range []string{ledger.RefusedInconsistent, ledger.RefusedRollback, ledger.RefusedUnknownLog, ledger.RefusedKey, ledger.RefusedOther} {
			ch <- prometheus.MustNewConstMetric(witnessRefusalsDesc, prometheus.CounterValue, float64(w.Refusals[reason]), w.Name, reason)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := c.log.UnpublishedLeaves(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(unpublishedDesc, prometheus.GaugeValue, float64(n))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
