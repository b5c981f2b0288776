// Package metricsink turns the log into Prometheus metrics per tool: call
// counters by status and policy decision, latency histograms, and good/bad
// call counters per SLO, the series the shipped alert rules
// (deploy/prometheus) compute burn rates from.
//
// It is a sink of the exporters runner, so it sees every call any producer
// recorded (HTTP ingest, the MCP hook, the collector) exactly as logged.
// Counters start at zero with the process; the runner starts it at the
// log's end (SinkSpec.FromEnd), so a restart never counts old calls again
// and Prometheus' rate() treats the restart as a counter reset.
package metricsink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/encode"
	"github.com/proofline/proofline/schemas"
)

// SLO is a tool group's objective: the share of calls that must be good,
// a good call being one that succeeded within LatencyMs. Policy blocks do
// not count either way (the control plane working, not the tool failing).
type SLO struct {
	Group     string
	Target    float64
	LatencyMs float64
}

// Config configures the sink.
type Config struct {
	Registerer prometheus.Registerer
	SLOs       []SLO
	// MaxTools caps the distinct (server, tool) label pairs (default 200);
	// calls of tools beyond the cap are counted under tool="other",
	// server="other", so a client inventing tool names cannot blow up the
	// series count.
	MaxTools int
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if c.Registerer == nil {
		errs = append(errs, errors.New("metrics sink: no registry"))
	}
	if c.MaxTools < 0 {
		errs = append(errs, fmt.Errorf("metrics sink: max tools %d", c.MaxTools))
	}
	for _, s := range c.SLOs {
		if s.Group == "" || s.Target <= 0 || s.Target >= 1 || s.LatencyMs <= 0 {
			errs = append(errs, fmt.Errorf("metrics sink: SLO %+v: want a group, 0 < target < 1, latency_ms > 0", s))
		}
	}
	return errors.Join(errs...)
}

// Sink updates the metrics; Send never fails.
type Sink struct {
	cfg      Config
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	sloCalls *prometheus.CounterVec
	slos     map[string]SLO

	mu    sync.Mutex
	tools map[[2]string]bool
}

// Buckets of the latency histogram, in seconds: they include the usual
// latency objectives so a histogram_quantile and an SLO threshold line up.
var Buckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// bucketsFor is Buckets with every SLO's latency objective added, so
// the share of calls within each objective can be read off the
// histogram (a 300 ms objective would otherwise fall between 0.25 and
// 0.5).
func bucketsFor(slos []SLO) []float64 {
	out := slices.Clone(Buckets)
	for _, slo := range slos {
		if slo.LatencyMs > 0 {
			out = append(out, slo.LatencyMs/1000)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// New registers the metrics.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxTools == 0 {
		cfg.MaxTools = 200
	}
	s := &Sink{cfg: cfg, slos: map[string]SLO{}, tools: map[[2]string]bool{},
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proofline_tool_calls_total",
			Help: "Calls in the log, by tool group, server, tool, outcome status and policy decision."},
			[]string{"tool_group", "server", "tool", "status", "decision"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "proofline_tool_call_duration_seconds",
			Help: "Latency of calls that reached the tool (policy blocks excluded).", Buckets: bucketsFor(cfg.SLOs)},
			[]string{"tool_group", "server", "tool"}),
		sloCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proofline_slo_calls_total",
			Help: "Calls of tool groups with an SLO, good (succeeded within the latency objective) or not; policy blocks excluded."},
			[]string{"tool_group", "good"}),
	}
	objective := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "proofline_slo_objective_ratio",
		Help: "The SLO target of each tool group (share of calls that must be good)."}, []string{"tool_group"})
	for _, slo := range cfg.SLOs {
		s.slos[slo.Group] = slo
		objective.WithLabelValues(slo.Group).Set(slo.Target)
		// Both series exist from the start, so a ratio is defined before
		// the first bad call.
		s.sloCalls.WithLabelValues(slo.Group, "true")
		s.sloCalls.WithLabelValues(slo.Group, "false")
	}
	for _, c := range []prometheus.Collector{s.calls, s.latency, s.sloCalls, objective} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("metrics sink: %w", err)
		}
	}
	return s, nil
}

// tool returns the label pair for a call, "other" beyond the cap.
func (s *Sink) tool(server, name string) (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{server, name}
	if s.tools[k] {
		return server, name
	}
	if len(s.tools) >= s.cfg.MaxTools {
		return "other", "other"
	}
	s.tools[k] = true
	return server, name
}

// Send counts the batch's calls.
func (s *Sink) Send(_ context.Context, b exporters.Batch) error {
	for _, e := range b.Events {
		r, err := encode.Record(e)
		if err != nil || r.IsCatalog() {
			continue // not a call: nothing to count
		}
		server, tool := s.tool(r.Tool.Server, r.Tool.Name)
		s.calls.WithLabelValues(r.Tool.Group, server, tool, r.Outcome.Status, r.Policy.Decision).Inc()
		if r.Outcome.Status == schemas.StatusPolicyBlocked {
			continue
		}
		lat := r.Latency()
		s.latency.WithLabelValues(r.Tool.Group, server, tool).Observe(lat.Seconds())
		if slo, ok := s.slos[r.Tool.Group]; ok {
			good := r.Outcome.Status == schemas.StatusOK && float64(lat.Microseconds())/1000 <= slo.LatencyMs
			s.sloCalls.WithLabelValues(r.Tool.Group, fmt.Sprint(good)).Inc()
		}
	}
	return nil
}

// Close has nothing to release.
func (s *Sink) Close(context.Context) error { return nil }
