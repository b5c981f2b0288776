package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/proofline/proofline/ledger/notesig"
	"github.com/proofline/proofline/ledger/verify"
)

// monitorMetrics are the monitor's Prometheus series.
type monitorMetrics struct {
	reg      *prometheus.Registry
	checks   *prometheus.CounterVec
	size     prometheus.Gauge
	hashed   prometheus.Counter
	lastOK   prometheus.Gauge
	witness  prometheus.Gauge
	alarming prometheus.Gauge
}

func newMonitorMetrics() *monitorMetrics {
	m := &monitorMetrics{
		reg: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proofline_monitor_checks_total",
			Help: "Checks of the log's checkpoint, by result: ok, witness (no quorum; not accepted), error (could not check), fork, rollback, mismatch (entries, tiles or signature)."}, []string{"result"}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{Name: "proofline_monitor_tree_size",
			Help: "Tree size of the last checkpoint that passed every check."}),
		hashed: prometheus.NewCounter(prometheus.CounterOpts{Name: "proofline_monitor_entries_hashed_total",
			Help: "Entries fetched and hashed: each entry once, as checks are incremental."}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "proofline_monitor_last_success_timestamp_seconds",
			Help: "When a check last passed."}),
		witness: prometheus.NewGauge(prometheus.GaugeOpts{Name: "proofline_monitor_witness_quorum",
			Help: "1 when the last checkpoint carried the witness policy's quorum (only with --witness-policy)."}),
		alarming: prometheus.NewGauge(prometheus.GaugeOpts{Name: "proofline_monitor_fork_detected",
			Help: "1 once a fork or rollback was found (the monitor then exits)."}),
	}
	m.reg.MustRegister(m.checks, m.size, m.hashed, m.lastOK, m.witness, m.alarming)
	for _, r := range []string{"ok", "witness", "error", "fork", "rollback", "mismatch"} {
		m.checks.WithLabelValues(r)
	}
	return m
}

// cmdMonitor follows a live log: at every interval it checks the new
// checkpoint against the last one it accepted (kept in the state file),
// its witness cosignatures, and re-derives the root from the new entries
// only. A fork or rollback ends it with exit 1, the evidence in its
// output and the state file left at the last good checkpoint.
func cmdMonitor(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("monitor", stderr)
	logURL := fs.String("log", "", "base URL of the log (serving /checkpoint and /tile/)")
	keyPath := fs.String("key", "", "the log's verifier key file")
	statePath := fs.String("state", "", "file keeping the last accepted checkpoint and the tree's frontier")
	policyPath := fs.String("witness-policy", "", "witness policy file: accept only checkpoints cosigned by its quorum")
	interval := fs.Duration("interval", time.Minute, "time between checks")
	token := fs.String("token", os.Getenv("PROOFLINE_TOKEN"), "bearer token when the log is not public (or PROOFLINE_TOKEN)")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus metrics at /metrics on this address")
	timeout := fs.Duration("timeout", 5*time.Minute, "time limit of one check")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return exitUsage, err
	}
	if *logURL == "" || *keyPath == "" || *statePath == "" {
		return exitUsage, fmt.Errorf("%w: --log, --key and --state are required", errUsage)
	}
	if *interval <= 0 {
		return exitUsage, fmt.Errorf("%w: --interval must be positive", errUsage)
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return exitUsage, fmt.Errorf("%w: %v", errUsage, err)
	}
	v, err := notesig.LoadVerifier(*keyPath)
	if err != nil {
		return exitUsage, err
	}
	policy, err := loadPolicy(*policyPath)
	if err != nil {
		return exitUsage, err
	}
	f, err := logFetcher(*logURL, *token)
	if err != nil {
		return exitUsage, err
	}
	states, err := verify.LoadState(*statePath)
	if err != nil {
		return exitUsage, err
	}
	met := newMonitorMetrics()
	if st := states.Get(v.Name()); st != nil {
		met.size.Set(float64(st.Size))
	}
	if *metricsListen != "" {
		ln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return exitUsage, fmt.Errorf("metrics listen %s: %w", *metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(met.reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		logger.Info("metrics server", "listen", ln.Addr().String())
	}
	logger.Info("monitoring", "log", *logURL, "origin", v.Name(), "interval", interval.String(), "witness_policy", *policyPath)
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		res, next, err := verify.Follow(cctx, f, v, policy, states.Get(v.Name()))
		cancel()
		var mm *verify.MismatchError
		switch {
		case err == nil:
			states.Put(next)
			if err := states.Save(*statePath); err != nil {
				logger.Error("saving state", "err", err)
				met.checks.WithLabelValues("error").Inc()
				break
			}
			met.checks.WithLabelValues("ok").Inc()
			met.size.Set(float64(res.TreeSize))
			met.hashed.Add(float64(res.Hashed))
			met.lastOK.SetToCurrentTime()
			if policy != nil {
				met.witness.Set(1)
			}
			attrs := []any{"tree_size", res.TreeSize, "previous", res.Previous, "hashed", res.Hashed}
			if res.Witnesses != nil {
				attrs = append(attrs, "cosigners", res.Witnesses.Cosigners)
			}
			logger.Info("checkpoint verified", attrs...)
		case errors.As(err, &mm) && mm.Kind == verify.KindWitness:
			// Not proof of wrongdoing (a fail-open log, a witness outage),
			// but not accepted either: the state stays where it was.
			met.checks.WithLabelValues("witness").Inc()
			met.witness.Set(0)
			logger.Error("checkpoint lacks the witness quorum; not accepted", "err", err)
		case errors.As(err, &mm):
			result := "mismatch"
			switch mm.Kind {
			case verify.KindFork:
				result = "fork"
			case verify.KindRollback:
				result = "rollback"
			}
			met.checks.WithLabelValues(result).Inc()
			met.alarming.Set(1)
			logger.Error("the log cannot be trusted", "result", result, "err", err)
			fmt.Fprintf(stdout, "ALERT: %v\n", err)
			return exitMismatch, nil
		case ctx.Err() != nil:
			return exitOK, nil
		default:
			met.checks.WithLabelValues("error").Inc()
			logger.Warn("check failed; retrying at the next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			logger.Info("monitor stopped")
			return exitOK, nil
		case <-t.C:
		}
	}
}
