// Package metrics serves proofline's own numbers to Prometheus: what
// ingest took, what the signer appended, how far each consumer is behind
// the stream, and how big the published log is. With the stream keeping
// every record until the signer has it, the signer's backlog is the
// number to alert on: it grows while the signer is down, and it is the
// stream's disk use.
//
// A server builds one Registry and hands its parts to the roles it runs.
// Nothing is registered globally, so several servers in one process (the
// tests) do not collide. Every part is nil-safe: a role given no metrics
// records none.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/ledger"
)

// Registry is one server's metrics.
type Registry struct {
	reg    *prometheus.Registry
	role   roleRegistry
	Ingest *Ingest
	Signer *Signer
}

// New makes a registry with the Go runtime's and the process's metrics.
func New() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r := &Registry{reg: reg,
		Ingest: &Ingest{records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proofline_ingest_records_total",
			Help: "Records posted to /v1/records, by result: accepted (stored), duplicate, rejected, conflict (the id is held by a different record).",
		}, []string{"result"})},
		Signer: &Signer{records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proofline_signer_records_total",
			Help: "Records the signer took from the stream, by result: appended (a new leaf), duplicate (already in the log) or conflict (the id is held by a different record: dead-lettered).",
		}, []string{"result"})},
	}
	reg.MustRegister(r.Ingest.records, r.Signer.records)
	// Zero series exist from the start, so a rate() over them is defined
	// before the first record.
	for _, res := range []string{"accepted", "duplicate", "rejected", "conflict"} {
		r.Ingest.records.WithLabelValues(res)
	}
	for _, res := range []string{"appended", "duplicate", "conflict"} {
		r.Signer.records.WithLabelValues(res)
	}
	return r
}

// Handler serves the registry in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{r.reg, &r.role}, promhttp.HandlerOpts{Timeout: 10 * time.Second})
}

// ForAttempt returns a fresh registerer for one run of the role named
// role, which builds its collectors anew each time it starts (the
// exporters and the span store: their runner is rebuilt when the
// supervisor restarts them). It replaces that role's previous run's
// collectors, which would otherwise collide with the new ones or keep
// being served frozen. A restart resets the role's counters, which
// Prometheus' rate() reads as a counter reset. Roles may register metrics
// of the same names with different labels (the runners' per-sink
// metrics): they are served as one family.
func (r *Registry) ForAttempt(role string) prometheus.Registerer {
	reg := prometheus.NewRegistry()
	r.role.mu.Lock()
	if r.role.cur == nil {
		r.role.cur = map[string]*prometheus.Registry{}
	}
	r.role.cur[role] = reg
	r.role.mu.Unlock()
	return reg
}

// roleRegistry gathers the current attempt's registry of each role.
type roleRegistry struct {
	mu  sync.Mutex
	cur map[string]*prometheus.Registry
}

func (g *roleRegistry) Gather() ([]*dto.MetricFamily, error) {
	g.mu.Lock()
	gs := make(prometheus.Gatherers, 0, len(g.cur))
	for _, reg := range g.cur {
		gs = append(gs, reg)
	}
	g.mu.Unlock()
	return gs.Gather()
}

// WatchStream reports the CALLS stream's size and each proofline
// consumer's backlog, read from JetStream at every scrape.
func (r *Registry) WatchStream(b *bus.Bus) { r.reg.MustRegister(&streamCollector{bus: b}) }

// WatchLog reports the size of the log's latest published checkpoint.
func (r *Registry) WatchLog(l *ledger.Log) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "proofline_log_size",
		Help: "Leaves in the log's latest published (signed) checkpoint.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cp, _, err := l.Checkpoint(ctx)
		if err != nil {
			return -1
		}
		return float64(cp.Size)
	}))
}

// WatchPublisher reports how many of the JetStream client's async
// publishes await their acknowledgement (pending), read at each scrape.
func (r *Registry) WatchPublisher(pending func() int) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "proofline_publish_async_pending",
		Help: "Async publishes of this process's JetStream client awaiting their acknowledgement. Each is freed when answered or after the publish ack timeout; near the client's maximum (32768) new publishes stall and ingest answers 503.",
	}, func() float64 { return float64(pending()) }))
}

// Ingest counts what ingest did with the records it was given.
type Ingest struct{ records *prometheus.CounterVec }

// Records adds one request's outcome.
func (m *Ingest) Records(accepted, duplicates, rejected int) {
	if m == nil {
		return
	}
	m.records.WithLabelValues("accepted").Add(float64(accepted))
	m.records.WithLabelValues("duplicate").Add(float64(duplicates))
	m.records.WithLabelValues("rejected").Add(float64(rejected))
}

// Conflicts counts records answered conflict: their id is held by a
// different record.
func (m *Ingest) Conflicts(n int) {
	if m == nil || n == 0 {
		return
	}
	m.records.WithLabelValues("conflict").Add(float64(n))
}

// Signer counts what the signer appended.
type Signer struct{ records *prometheus.CounterVec }

// Appended adds one batch: n records, dups of them already in the log.
func (m *Signer) Appended(n, dups int) {
	if m == nil {
		return
	}
	m.records.WithLabelValues("appended").Add(float64(n - dups))
	m.records.WithLabelValues("duplicate").Add(float64(dups))
}

var (
	streamMessagesDesc = prometheus.NewDesc("proofline_stream_messages",
		"Messages in the CALLS stream (each a lone record or an envelope of a batch's records): those some consumer has not acknowledged yet.", nil, nil)
	streamBytesDesc = prometheus.NewDesc("proofline_stream_bytes",
		"Bytes the CALLS stream holds.", nil, nil)
	backlogDesc = prometheus.NewDesc("proofline_consumer_backlog_messages",
		"Messages (lone records or envelopes) a consumer has not acknowledged: not yet delivered plus delivered and unacknowledged. For the signer, messages whose records were answered 202 and are not all in the log yet.",
		[]string{"consumer"}, nil)
	scrapeErrDesc = prometheus.NewDesc("proofline_stream_scrape_error",
		"1 when JetStream did not answer this scrape (the stream and backlog series are then missing).", nil, nil)
)

// streamCollector reads the stream and its consumers at scrape time;
// JetStream keeps the numbers, so there is nothing to update in between.
type streamCollector struct{ bus *bus.Bus }

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- streamMessagesDesc
	ch <- streamBytesDesc
	ch <- backlogDesc
	ch <- scrapeErrDesc
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	failed := 0.0
	defer func() { ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, failed) }()
	s, err := c.bus.JS.Stream(ctx, bus.StreamName)
	if err != nil {
		failed = 1
		return
	}
	st := s.CachedInfo().State
	ch <- prometheus.MustNewConstMetric(streamMessagesDesc, prometheus.GaugeValue, float64(st.Msgs))
	ch <- prometheus.MustNewConstMetric(streamBytesDesc, prometheus.GaugeValue, float64(st.Bytes))
	for _, name := range []string{bus.SignerConsumer, bus.SpanConsumer} {
		ci, err := s.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue // a role this deployment does not run
		}
		if err != nil {
			failed = 1
			continue
		}
		info := ci.CachedInfo()
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(info.NumPending)+float64(info.NumAckPending), name)
	}
}

// Conflicts counts records dead-lettered because their id is held by a
// different record.
func (m *Signer) Conflicts(n int) {
	if m == nil || n == 0 {
		return
	}
	m.records.WithLabelValues("conflict").Add(float64(n))
}
