package e2e

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads /metrics at addr: every sample as "name{label=value}".
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[key] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// waitMetric waits for the sample key to equal want.
func waitMetric(t *testing.T, addr, key string, want float64) map[string]float64 {
	t.Helper()
	var got map[string]float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = scrape(t, addr); got[key] == want {
			return got
		}
	}
	t.Fatalf("%s = %v, want %v", key, got[key], want)
	return nil
}

// TestMetrics: what an operator alerts on is in /metrics. Records accepted
// while no signer runs show as the signer's backlog (and stay in the
// stream); once a signer runs the backlog drains to zero, the appended
// count and the log's size show every record, and ingest counts what it
// accepted and rejected. With the span store and exporters running, their
// delivery and lag behind the log are there too, per sink.
func TestMetrics(t *testing.T) {
	data := t.TempDir()
	m := freeAddr(t)
	s := startServer(t, data, "--roles", "ingest", "--metrics-listen", m)
	tok := s.token("gw-1", "ingest", "1h")
	list := ids("met", 12)
	bad := record("met-bad")
	bad["outcome"] = map[string]any{"status": "maybe"}
	if code, _, pr, err := s.post(tok, jsonArray(t, append(records(list), bad)...), nil); err != nil || code != 202 || pr.Accepted != 12 || pr.Rejected != 1 {
		t.Fatalf("post: %d %+v %v", code, pr, err)
	}
	got := scrape(t, m)
	for key, want := range map[string]float64{
		"proofline_ingest_records_total{result=accepted}":      12,
		"proofline_ingest_records_total{result=rejected}":      1,
		"proofline_ingest_records_total{result=duplicate}":     0,
		"proofline_consumer_backlog_messages{consumer=signer}": 1, // the request's 12 records in one envelope
		"proofline_stream_messages":                            1,
		"proofline_stream_scrape_error":                        0,
	} {
		if got[key] != want {
			t.Errorf("ingest only: %s = %v, want %v", key, got[key], want)
		}
	}
	s.stop()

	s = startServer(t, data, "--roles", "ingest,signer", "--metrics-listen", m)
	got = waitMetric(t, m, "proofline_consumer_backlog_messages{consumer=signer}", 0)
	got = waitMetric(t, m, "proofline_log_size", 12)
	if n := got["proofline_signer_records_total{result=appended}"]; n != 12 {
		t.Errorf("appended = %v, want 12", n)
	}
	if n := got["proofline_stream_messages"]; n != 0 {
		t.Errorf("stream holds %v messages after the signer had them all, want 0", n)
	}
	if got["go_goroutines"] == 0 || got["process_resident_memory_bytes"] == 0 {
		t.Error("Go runtime and process metrics missing")
	}
	s.stop()

	// The span store and the exporters follow the log: how far each is
	// behind it is the runners' per-sink metrics, served together.
	cfg := filepath.Join(t.TempDir(), "exporters.yaml")
	writeFile(t, cfg, []byte("sinks:\n  - name: lake\n    type: file\n    file: {dir: "+filepath.Join(t.TempDir(), "lake")+"}\n"))
	s = startServer(t, data, "--metrics-listen", m, "--exporters", cfg)
	waitMetric(t, m, "proofline_export_delivered_total{sink=spans}", 12)
	waitMetric(t, m, "proofline_export_delivered_total{sink=lake}", 12)
	got = waitMetric(t, m, "proofline_export_lag_leaves{sink=spans}", 0)
	if _, ok := got["proofline_export_lag_leaves{sink=lake}"]; !ok {
		t.Errorf("no lag metric for the lake sink: %v", got)
	}
}
