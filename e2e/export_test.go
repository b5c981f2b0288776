package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/splunkhec/hectest"
)

// exporterProc is one `proofline export run` process.
type exporterProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startExporter(t *testing.T, args ...string) *exporterProc {
	t.Helper()
	p := &exporterProc{done: make(chan struct{}), log: filepath.Join(t.TempDir(), "exporter.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(binary, append([]string{"export", "run"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() { p.signal(syscall.SIGKILL) })
	return p
}

func (p *exporterProc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *exporterProc) logs() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// fileLeaves decodes every file of a file sink (open ones included, as far
// as they are complete) and counts each leaf index.
func fileLeaves(t *testing.T, dir string) map[uint64]int {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.zst*"))
	out := map[uint64]int{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(dec)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev exporters.NativeEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == exporters.TypeCall {
				out[ev.Evidence.LeafIndex]++
			}
		}
		dec.Close()
		f.Close()
	}
	return out
}

// TestExportKill9UnderIngest kills the exporter with SIGKILL repeatedly
// while gateways keep posting; afterwards every leaf of the log has reached
// the file sink and the Splunk HEC receiver at least once, with duplicates
// only from the batches in flight, and `export status --verify` agrees.
func TestExportKill9UnderIngest(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	ingestTok := s.token("gw-1", "ingest", "1h")
	queryTok := s.token("auditor", "query", "1h")

	hec := hectest.New("hec-token", true)
	defer hec.Close()
	tokFile := filepath.Join(t.TempDir(), "hec.token")
	writeFile(t, tokFile, []byte("hec-token\n"))
	lake := filepath.Join(t.TempDir(), "lake")
	cfg := filepath.Join(t.TempDir(), "exporters.yaml")
	const batch = 100
	writeFile(t, cfg, []byte(fmt.Sprintf(`egress_allow: [127.0.0.1]
sinks:
  - name: lake
    type: file
    batch_size: %d
    file: {dir: %s, max_bytes: 65536}
  - name: splunk
    type: splunk_hec
    batch_size: %d
    splunk_hec: {url: %q, token_file: %s, index: proofline, sourcetype: "proofline:call", ack: true, ack_timeout: 5s}
`, batch, lake, batch, hec.URL, tokFile)))
	args := []string{"--data", data, "--exporters", cfg, "--poll", "50ms", "--log-level", "debug"}

	var g loadGen
	stop := make(chan struct{})
	wg := g.run(t, func() *server { return s }, ingestTok, "exp", 2, 50, stop)

	const kills = 4
	for k := 0; k < kills; k++ {
		p := startExporter(t, args...)
		// Let it deliver something, then kill it in the middle of whatever it does.
		start, _ := exporters.LoadCursor(filepath.Join(data, "exporters"), "splunk")
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, _ := exporters.LoadCursor(filepath.Join(data, "exporters"), "splunk")
			if c.Next > start.Next+batch {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("exporter run %d delivered nothing:\n%s", k, p.logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.signal(syscall.SIGKILL)
	}
	close(stop)
	wg.Wait()
	if len(g.acked) == 0 {
		t.Fatal("no record was acknowledged")
	}

	p := startExporter(t, args...)
	var size uint64
	deadline := time.Now().Add(60 * time.Second)
	for {
		size = checkpointSize(t, s, queryTok, filepath.Join(data, "keys", "log.pub"))
		out, _, code := cli(t, "export", "status", "--data", data, "--verify")
		if code == 0 && size >= uint64(len(g.acked)) && strings.Contains(out, "OK: splunk") && strings.Contains(out, "OK: lake") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporters did not catch up with the log (size %d):\n%s\n%s", size, out, p.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.signal(syscall.SIGTERM)

	splunk := map[uint64]int{}
	for _, ev := range hec.Indexed() {
		f := ev["fields"].(map[string]any)
		if li, ok := f["leaf_index"].(float64); ok {
			splunk[uint64(li)]++
		}
	}
	for name, got := range map[string]map[uint64]int{"splunk": splunk, "lake": fileLeaves(t, lake)} {
		dups := 0
		for i := uint64(0); i < size; i++ {
			switch n := got[i]; {
			case n == 0:
				t.Fatalf("%s: leaf %d of %d never arrived", name, i, size)
			case n > 1:
				dups += n - 1
			}
		}
		// Only a batch in flight at a kill may arrive twice.
		if dups > kills*batch {
			t.Errorf("%s: %d duplicate deliveries after %d kills with batches of %d", name, dups, kills, batch)
		}
		t.Logf("%s: %d leaves, %d duplicates after %d kills", name, size, dups, kills)
	}

	// The status as an operator reads it.
	out, errOut, code := cli(t, "export", "status", "--data", data, "--json")
	if code != 0 {
		t.Fatalf("export status: %d %s", code, errOut)
	}
	var rows []struct {
		Sink   string `json:"sink"`
		Cursor uint64 `json:"cursor_on_disk"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	for _, r := range rows {
		if r.Cursor < size {
			t.Fatalf("sink %s cursor %d < %d", r.Sink, r.Cursor, size)
		}
	}
}

// TestExportReplayAndDeadLetters: a poisoned event is dead-lettered and
// listed; a replay delivers a range again.
func TestExportReplayAndDeadLetters(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	tok := s.token("gw-1", "ingest", "1h")
	code, _, _, err := s.post(tok, jsonArray(t, records(ids("rp", 20))...), nil)
	if err != nil || code != 202 {
		t.Fatalf("post: %d %v", code, err)
	}
	hec := hectest.New("t", false)
	defer hec.Close()
	hec.Poison("rp-00005")
	tokFile := filepath.Join(t.TempDir(), "hec.token")
	writeFile(t, tokFile, []byte("t"))
	cfg := filepath.Join(t.TempDir(), "exporters.yaml")
	writeFile(t, cfg, []byte(fmt.Sprintf("egress_allow: [127.0.0.1]\nsinks:\n  - name: splunk\n    type: splunk_hec\n    splunk_hec: {url: %q, token_file: %s}\n", hec.URL, tokFile)))
	p := startExporter(t, "--data", data, "--exporters", cfg, "--poll", "50ms")
	waitCount := func(want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			n := 0
			for _, ev := range hec.Indexed() {
				if _, ok := ev["fields"].(map[string]any)["leaf_index"]; ok {
					n++
				}
			}
			if n >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("HEC holds %d call events, want %d:\n%s", n, want, p.logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCount(19)
	out, _, code := cli(t, "export", "deadletters", "--data", data, "--sink", "splunk")
	if code != 0 || !strings.Contains(out, "rp-00005") || !strings.Contains(out, "HEC code 6") {
		t.Fatalf("deadletters: %d\n%s", code, out)
	}
	out, _, code = cli(t, "export", "replay", "--data", data, "--sink", "splunk", "--from", "10")
	if code != 0 {
		t.Fatalf("replay: %d %s", code, out)
	}
	waitCount(29)
	p.signal(syscall.SIGTERM)
	if !bytes.Contains([]byte(p.logs()), []byte("replay: cursor moved")) {
		t.Fatalf("no replay in the exporter's log:\n%s", p.logs())
	}
}

// TestExportPrometheusMetrics: a prometheus sink in the exporters file
// serves per-tool call counters and per-SLO good/bad counters on the
// exporter's /metrics, counting calls logged after it started (the log's
// older calls are not counted again by a restarted exporter).
func TestExportPrometheusMetrics(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	tok := s.token("gw-1", "ingest", "1h")
	old := record("old-1")
	if code, _, _, err := s.post(tok, jsonArray(t, old), nil); err != nil || code != 202 {
		t.Fatalf("post: %d %v", code, err)
	}
	s.waitProof(s.token("q", "query", "1h"), "old-1")
	slo := filepath.Join(t.TempDir(), "slo.yaml")
	writeFile(t, slo, []byte("slos:\n  - {group: ticketing, target: 0.99, latency_ms: 100}\n"))
	cfg := filepath.Join(t.TempDir(), "exporters.yaml")
	writeFile(t, cfg, []byte(fmt.Sprintf("sinks:\n  - name: metrics\n    type: prometheus\n    prometheus: {slo_file: %s}\n", slo)))
	addr := freeAddr(t)
	p := startExporter(t, "--data", data, "--exporters", cfg, "--poll", "50ms", "--metrics-listen", addr)
	defer p.signal(syscall.SIGTERM)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exporter's metrics listener did not come up:\n%s", p.logs())
		}
	}
	waitMetric(t, addr, "proofline_slo_calls_total{good=false}{tool_group=ticketing}", 0)

	var recs []map[string]any
	for i := range 5 {
		r := record(fmt.Sprintf("new-%d", i))
		r["tool"] = map[string]any{"name": "search_tickets", "server": "jira-mcp", "group": "ticketing"}
		r["ts_end"] = "2026-11-25T10:00:00.050Z" // within the 100 ms objective
		if i == 4 {
			r["outcome"] = map[string]any{"status": "tool_error", "error_code": "E1"}
		}
		recs = append(recs, r)
	}
	if code, _, _, err := s.post(tok, jsonArray(t, recs...), nil); err != nil || code != 202 {
		t.Fatalf("post: %d %v", code, err)
	}
	waitMetric(t, addr, "proofline_slo_calls_total{good=false}{tool_group=ticketing}", 1)
	got := waitMetric(t, addr, "proofline_slo_calls_total{good=true}{tool_group=ticketing}", 4)
	var calls float64
	for k, v := range got {
		if strings.HasPrefix(k, "proofline_tool_calls_total{") && strings.Contains(k, "{tool=search_tickets}") && strings.Contains(k, "{server=jira-mcp}") {
			calls += v
		}
	}
	if calls != 5 {
		t.Fatalf("%v calls of jira-mcp/search_tickets counted, want the 5 posted after start (the old one not again):\n%v", calls, got)
	}
	if got["proofline_slo_objective_ratio{tool_group=ticketing}"] != 0.99 {
		t.Fatalf("objective: %v", got["proofline_slo_objective_ratio{tool_group=ticketing}"])
	}
}
