package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// copyLogKey puts the log key of data into a fresh data dir: a second log
// under the same key, which is what a fork or a rollback looks like.
func copyLogKey(t *testing.T, data string) string {
	t.Helper()
	other := t.TempDir()
	if err := os.MkdirAll(filepath.Join(other, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"log.key", "log.pub"} {
		raw, err := os.ReadFile(filepath.Join(data, "keys", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(other, "keys", f), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return other
}

// runMonitorUntilExit runs proofline monitor until it exits by itself (a
// minute at most) and returns its output and exit code.
func runMonitorUntilExit(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"monitor"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("monitor did not exit within a minute:\n%s", out.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return out.String(), code
}

// TestMonitorCatchesRollbackAndFork follows a log with proofline monitor,
// which hashes each entry once across checks, then points it at logs
// signed with the same key that rolled back or forked: it exits 1 with
// an alert and keeps the last good checkpoint in its state.
func TestMonitorCatchesRollbackAndFork(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, "--roles", "ingest,signer", "--public-log")
	keyPath := filepath.Join(data, "keys", "log.pub")
	tok := s.token("gw", "ingest", "1h")
	queryTok := s.token("auditor", "query", "1h")
	first := ids("mon1", 5)
	s.mustPost(tok, first)
	s.waitProof(queryTok, first[4])

	state := filepath.Join(t.TempDir(), "monitor-state.json")
	metricsAddr := freeAddr(t)
	mon := exec.Command(binary, "monitor", "--log", s.url, "--key", keyPath, "--state", state, "--interval", "100ms", "--metrics-listen", metricsAddr)
	var monOut bytes.Buffer
	mon.Stdout, mon.Stderr = &monOut, &monOut
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	monDone := make(chan error, 1)
	go func() { monDone <- mon.Wait() }()
	t.Cleanup(func() { _ = mon.Process.Kill() })
	waitMonitor := func(size float64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("monitor at tree size %v", size), func() (bool, string) {
			select {
			case err := <-monDone:
				t.Fatalf("monitor exited: %v\n%s", err, monOut.String())
			default:
			}
			m := scrapeOrNil(metricsAddr)
			return m != nil && m["proofline_monitor_tree_size"] == size, fmt.Sprint(m["proofline_monitor_tree_size"])
		})
	}
	waitMonitor(5)
	second := ids("mon2", 7)
	s.mustPost(tok, second)
	s.waitProof(queryTok, second[6])
	waitMonitor(12)
	if m := scrape(t, metricsAddr); m["proofline_monitor_entries_hashed_total"] != 12 {
		t.Fatalf("monitor hashed %v entries for a log of 12: checks are not incremental", m["proofline_monitor_entries_hashed_total"])
	}
	_ = mon.Process.Signal(syscall.SIGTERM)
	if err := <-monDone; err != nil {
		t.Fatalf("monitor on SIGTERM: %v\n%s", err, monOut.String())
	}
	s.stop()
	good, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, want string
		records    int
	}{
		{"rollback", "rollback mismatch", 3},
		{"fork", "fork mismatch", 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := startServer(t, copyLogKey(t, data), "--roles", "ingest,signer", "--public-log")
			idList := ids("other-"+tc.name, tc.records)
			other.mustPost(other.token("gw", "ingest", "1h"), idList)
			other.waitProof(other.token("auditor", "query", "1h"), idList[len(idList)-1])
			out, code := runMonitorUntilExit(t, "--log", other.url, "--key", keyPath, "--state", state, "--interval", "100ms")
			if code != 1 || !strings.Contains(out, "ALERT: "+tc.want) {
				t.Fatalf("monitor on a log that %s: exit %d, want 1 with %q:\n%s", tc.name, code, tc.want, out)
			}
			if now, _ := os.ReadFile(state); !bytes.Equal(now, good) {
				t.Fatalf("the state file changed after a %s", tc.name)
			}
		})
	}
}

// scrapeOrNil reads a metrics endpoint as scrape does; nil while it
// does not answer yet (the monitor starts it after loading its state).
func scrapeOrNil(addr string) map[string]float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil
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
