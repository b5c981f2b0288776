package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRunsExporters: serve --exporters delivers the log it signs to
// the file's sinks (a file sink, a second one behind a CEL filter, a
// prometheus sink on serve's own /metrics), keeps the state where
// `export status` reads it, holds the state directory so that no second
// exporter runs on it, and after a kill -9 resumes so that every leaf
// reaches every sink.
func TestServeRunsExporters(t *testing.T) {
	data := t.TempDir()
	lake := filepath.Join(t.TempDir(), "lake")
	failures := filepath.Join(t.TempDir(), "failures")
	cfg := filepath.Join(t.TempDir(), "exporters.yaml")
	writeFile(t, cfg, []byte(fmt.Sprintf(`sinks:
  - name: lake
    type: file
    file: {dir: %s}
  - name: failures
    type: file
    filter: 'record.outcome.status != "ok"'
    file: {dir: %s}
  - name: metrics
    type: prometheus
`, lake, failures)))
	metricsAddr := freeAddr(t)
	args := []string{"--roles", "ingest,signer", "--exporters", cfg, "--metrics-listen", metricsAddr}
	s := startServer(t, data, args...)

	postMixed := func(s *server, prefix string, n int) {
		t.Helper()
		recs := records(ids(prefix, n))
		for i := range recs {
			if i%10 == 0 {
				recs[i]["outcome"] = map[string]any{"status": "tool_error", "error_code": "E1"}
			}
		}
		tok := s.token("gw", "ingest", "1h")
		for i := 0; i < n; i += 100 {
			if code, _, pr, err := s.post(tok, jsonArray(t, recs[i:min(n, i+100)]...), nil); err != nil || code != 202 {
				t.Fatalf("post: %d %+v %v", code, pr, err)
			}
		}
	}
	waitLeaves := func(dir string, want int) map[uint64]int {
		t.Helper()
		var got map[uint64]int
		waitFor(t, fmt.Sprintf("%d leaves in %s", want, filepath.Base(dir)), func() (bool, string) {
			got = fileLeaves(t, dir)
			return len(got) == want, fmt.Sprintf("%d leaves", len(got))
		})
		return got
	}

	postMixed(s, "served", 200)
	waitLeaves(lake, 200)
	for leaf := range waitLeaves(failures, 20) {
		if leaf%10 != 0 {
			t.Fatalf("leaf %d (outcome ok) reached the failures sink", leaf)
		}
	}
	waitMetric(t, metricsAddr, "proofline_export_delivered_total{sink=lake}", 200)
	got := waitMetric(t, metricsAddr, "proofline_export_delivered_total{sink=failures}", 20)
	var calls float64
	for k, v := range got {
		if strings.HasPrefix(k, "proofline_tool_calls_total{") {
			calls += v
		}
	}
	if calls != 200 {
		t.Fatalf("the prometheus sink counted %v calls, want 200", calls)
	}
	waitFor(t, "export status --verify to pass", func() (bool, string) {
		out, errOut, code := cli(t, "export", "status", "--data", data, "--verify")
		return code == 0, out + errOut
	})
	if out, errOut, code := cli(t, "export", "run", "--data", data, "--exporters", cfg, "--metrics-listen", freeAddr(t)); code == 0 || !strings.Contains(out+errOut, "in use by another exporter process") {
		t.Fatalf("a second exporter on serve's state directory: exit %d, want a refusal: %s%s", code, out, errOut)
	}

	s.kill9()
	s = startServer(t, data, args...)
	postMixed(s, "after", 100)
	leaves := waitLeaves(lake, 300)
	for i := range uint64(300) {
		if leaves[i] == 0 {
			t.Fatalf("leaf %d missing from the lake after the restart", i)
		}
	}
	waitLeaves(failures, 30)
}

// TestServeExportersUsage: --exporters is refused at start, with the
// reason, where it cannot work.
func TestServeExportersUsage(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.yaml")
	writeFile(t, good, []byte("sinks:\n  - name: lake\n    type: file\n    file: {dir: /tmp/x}\n"))
	prom := filepath.Join(t.TempDir(), "prom.yaml")
	writeFile(t, prom, []byte("sinks:\n  - name: m\n    type: prometheus\n"))
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, []byte("sinks:\n  - name: lake\n    type: file\n    filter: 'record.x +'\n    file: {dir: /tmp/x}\n"))
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no signer", []string{"--roles", "ingest", "--exporters", good}, "--exporters needs the signer role"},
		{"prometheus without metrics", []string{"--roles", "ingest,signer", "--exporters", prom}, `sink "m" is a prometheus sink: it needs --metrics-listen`},
		{"bad filter", []string{"--roles", "ingest,signer", "--exporters", bad}, `bad.yaml:4: sink "lake": filter:`},
		{"missing file", []string{"--roles", "ingest,signer", "--exporters", filepath.Join(t.TempDir(), "none.yaml")}, "--exporters: exporters file:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := cli(t, append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, c.args...)...)
			if code != 2 || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d, want 2 and %q: %s%s", code, c.want, out, errOut)
			}
		})
	}
}

// TestServeExportersStateInExternalNATS: with an external NATS, serve's
// exporters keep their state in its key-value bucket (as `export run
// --nats` does), not in the data directory, so `export status --nats`
// reads it from anywhere.
func TestServeExportersStateInExternalNATS(t *testing.T) {
	n := startNATS(t)
	data := t.TempDir()
	lake := filepath.Join(t.TempDir(), "lake")
	cfg := filepath.Join(t.TempDir(), "exporters.yaml")
	writeFile(t, cfg, []byte(fmt.Sprintf("sinks:\n  - name: lake\n    type: file\n    file: {dir: %s}\n", lake)))
	s := startServer(t, data, "--roles", "ingest,signer", "--nats", n.url(), "--exporters", cfg)
	post(t, s, "ext-exp", 100)
	waitFor(t, "100 leaves in the lake", func() (bool, string) {
		got := fileLeaves(t, lake)
		return len(got) == 100, fmt.Sprint(len(got))
	})
	waitFor(t, "export status --nats to show the lake's cursor", func() (bool, string) {
		out, errOut, code := cli(t, "export", "status", "--nats", n.url(), "--json")
		return code == 0 && strings.Contains(out, `"sink": "lake"`) && strings.Contains(out, `"cursor_on_disk": 100`), out + errOut
	})
	if _, err := os.Stat(filepath.Join(data, "exporters")); !os.IsNotExist(err) {
		t.Fatalf("serve kept exporter state in the data directory with an external NATS: %v", err)
	}
}
