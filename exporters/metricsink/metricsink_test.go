package metricsink_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/metricsink"
)

func call(i int, group, server, tool, status, decision string, ms int) exporters.Event {
	id := fmt.Sprintf("r-%d", i)
	rec := fmt.Sprintf(`{"record_id":%q,"ts_start":"2026-12-01T10:00:00Z","ts_end":"2026-12-01T10:00:00.%03dZ","actor":{"id":"a","type":"agent"},"tool":{"name":%q,"server":%q,"group":%q},"policy":{"decision":%q},"outcome":{"status":%q}}`,
		id, ms, tool, server, group, decision, status)
	return exporters.Event{Evidence: exporters.Evidence{LeafIndex: uint64(i), RecordID: id}, Record: []byte(rec)}
}

func TestMetricSinkCountsPerToolAndPerSLO(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := metricsink.New(metricsink.Config{Registerer: reg, MaxTools: 3,
		SLOs: []metricsink.SLO{{Group: "ticketing", Target: 0.99, LatencyMs: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	evs := []exporters.Event{
		call(0, "ticketing", "jira-mcp", "search", "ok", "allow", 40),           // good
		call(1, "ticketing", "confluence-mcp", "search", "ok", "allow", 300),    // slow: bad
		call(2, "ticketing", "jira-mcp", "search", "tool_error", "allow", 10),   // bad
		call(3, "ticketing", "jira-mcp", "delete", "policy_blocked", "deny", 0), // not counted for the SLO
		call(4, "ops", "x", "t4", "ok", "allow", 1),                             // 4th tool: over the cap
		{Evidence: exporters.Evidence{LeafIndex: 5, RecordID: "cat-1"}, // a catalog record: not a call
			Record: []byte(`{"record_id":"cat-1","ts_start":"2026-12-01T10:00:00Z","ts_end":"2026-12-01T10:00:00Z","actor":{"id":"mcphook","type":"service"},"tool":{"name":"search","server":"jira-mcp","group":"ticketing"},"mcp":{"method":"catalog/tool"},"policy":{"decision":"allow"},"outcome":{"status":"ok"}}`)},
	}
	if err := s.Send(context.Background(), exporters.Batch{Events: evs}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		c    prometheus.Collector
		name string
		want float64
	}{
		{nil, `proofline_tool_calls_total{decision="allow",server="jira-mcp",status="ok",tool="search",tool_group="ticketing"}`, 1},
		{nil, `proofline_tool_calls_total{decision="allow",server="confluence-mcp",status="ok",tool="search",tool_group="ticketing"}`, 1},
		{nil, `proofline_tool_calls_total{decision="deny",server="jira-mcp",status="policy_blocked",tool="delete",tool_group="ticketing"}`, 1},
		{nil, `proofline_tool_calls_total{decision="allow",server="other",status="ok",tool="other",tool_group="ops"}`, 1},
		{nil, `proofline_slo_calls_total{good="true",tool_group="ticketing"}`, 1},
		{nil, `proofline_slo_calls_total{good="false",tool_group="ticketing"}`, 2},
		{nil, `proofline_slo_objective_ratio{tool_group="ticketing"}`, 0.99},
		{nil, `proofline_tool_call_duration_seconds_count{server="jira-mcp",tool="search",tool_group="ticketing"}`, 2},
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			labels := ""
			for i, l := range m.Label {
				if i > 0 {
					labels += ","
				}
				labels += fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
			}
			key := mf.GetName() + "{" + labels + "}"
			switch {
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				got[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				got[mf.GetName()+"_count{"+labels+"}"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	for _, tc := range tests {
		if got[tc.name] != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got[tc.name], tc.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "proofline_tool_calls_total"); n != 5 {
		t.Errorf("%d call series, want 5 (four under the cap of 3 tools, the 4th tool folded into other)", n)
	}
}

// TestLatencyBucketsHoldEachObjective: each SLO's latency objective is a
// bucket of the histogram, so the calls within it can be read off it.
func TestLatencyBucketsHoldEachObjective(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := metricsink.New(metricsink.Config{Registerer: reg,
		SLOs: []metricsink.SLO{{Group: "billing", Target: 0.99, LatencyMs: 300}, {Group: "ticketing", Target: 0.95, LatencyMs: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	evs := []exporters.Event{
		call(0, "billing", "pay-mcp", "charge", "ok", "allow", 280),
		call(1, "billing", "pay-mcp", "charge", "ok", "allow", 320),
		call(2, "billing", "pay-mcp", "charge", "ok", "allow", 300),
	}
	if err := s.Send(context.Background(), exporters.Batch{Events: evs}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var within, bounds = -1.0, []float64{}
	for _, mf := range mfs {
		if mf.GetName() != "proofline_tool_call_duration_seconds" {
			continue
		}
		for _, b := range mf.Metric[0].Histogram.Bucket {
			bounds = append(bounds, b.GetUpperBound())
			if b.GetUpperBound() == 0.3 {
				within = float64(b.GetCumulativeCount())
			}
		}
	}
	if within != 2 {
		t.Fatalf("calls within the 300 ms bucket: %v (bounds %v), want 2 (280 and 300 ms)", within, bounds)
	}
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			t.Fatalf("bounds not increasing: %v", bounds)
		}
	}
}
