package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogAuditsItself alters the log on disk under a running server — a
// byte of an entry bundle, and separately of a hash tile — and checks that
// the server notices within one audit period: /readyz turns 503 naming
// log_integrity and the altered file, /v1/proof refuses with that error
// instead of serving a bundle that fails, no checkpoint is signed on top
// of the damage, and a restart over the altered log refuses to start.
func TestLogAuditsItself(t *testing.T) {
	cases := []struct {
		name string
		path string // under DATA/log: a full bundle and its tile, inside the recheck window
		// what the failure names
		want string
	}{
		{"entry bundle", "tile/entries/001", "root mismatch"},
		{"hash tile", "tile/0/001", "tile/0/001"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := t.TempDir()
			s := startServer(t, data, "--audit-interval", "1s")
			ingestTok := s.token("gw-1", "ingest", "1h")
			queryTok := s.token("auditor", "query", "1h")
			all := ids("audit", 600) // bundles 000 and 001 full, 002 partial
			if code, _, pr, err := s.post(ingestTok, jsonArray(t, records(all)...), nil); err != nil || code != http.StatusAccepted || pr.Accepted != len(all) {
				t.Fatalf("post: %d %+v %v", code, pr, err)
			}
			s.waitProof(queryTok, all[len(all)-1])
			_, cpBefore := s.get(queryTok, "/checkpoint")

			p := filepath.Join(data, "log", filepath.FromSlash(c.path))
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)-1] ^= 0x01
			if err := os.WriteFile(p, raw, 0o600); err != nil {
				t.Fatal(err)
			}

			// Noticed within one period (1s); the deadline is generous
			// for a loaded CI machine, the test does not time it.
			var ready struct {
				Ready  bool              `json:"ready"`
				Checks map[string]string `json:"checks"`
			}
			// The span store, following the log, may notice first (its
			// reader proves every batch and stops on a mismatch): wait for
			// the audit's own check.
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, body := s.get("", "/readyz")
				if code == http.StatusServiceUnavailable {
					if err := json.Unmarshal(body, &ready); err != nil {
						t.Fatalf("readyz %s: %v", body, err)
					}
					if ready.Checks["log_integrity"] != "ok" {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("/readyz still %d %s 30s after %s was altered\n%s", code, body, c.path, s.logs())
				}
				time.Sleep(100 * time.Millisecond)
			}
			if msg := ready.Checks["log_integrity"]; !strings.Contains(msg, c.want) {
				t.Fatalf("readyz log_integrity = %q, want it to name %q (checks %v)", msg, c.want, ready.Checks)
			}
			if !strings.Contains(s.logs(), "LOG INTEGRITY FAILURE") {
				t.Fatalf("no integrity failure in the server log:\n%s", s.logs())
			}

			code, body := s.get(queryTok, "/v1/proof/"+all[300])
			var eb struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if code != http.StatusServiceUnavailable || json.Unmarshal(body, &eb) != nil || eb.Error.Code != "log_integrity" {
				t.Fatalf("proof over an altered log: %d %s, want 503 log_integrity", code, body)
			}

			// Records still get in the stream (202) but are neither
			// appended nor signed over: once the signer has tried,
			// the checkpoint is the one from before.
			more := ids("after", 5)
			if code, _, pr, err := s.post(ingestTok, jsonArray(t, records(more)...), nil); err != nil || code != http.StatusAccepted {
				t.Fatalf("post after: %d %+v %v", code, pr, err)
			}
			deadline = time.Now().Add(30 * time.Second)
			for !strings.Contains(s.logs(), "not appending: log integrity") {
				if time.Now().After(deadline) {
					t.Fatalf("the signer did not try to append within 30s\n%s", s.logs())
				}
				time.Sleep(100 * time.Millisecond)
			}
			if _, cpAfter := s.get(queryTok, "/checkpoint"); string(cpAfter) != string(cpBefore) {
				t.Fatalf("a checkpoint was signed over the altered log:\nbefore %s\nafter %s", cpBefore, cpAfter)
			}

			// A restart over the altered log refuses to start.
			s.stop()
			cmd := exec.Command(binary, "serve", "--data", data, "--listen", freeAddr(t), "--origin", "e2e.proofline.test/log")
			out, err := runWithTimeout(cmd, 60*time.Second)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("serve over the altered log: %v, want exit 1 (as verify on a mismatch)\n%s", err, out)
			}
			if !strings.Contains(out, "integrity") || !strings.Contains(out, c.want) {
				t.Fatalf("serve over the altered log exited %d without naming the failure (%q):\n%s", ee.ExitCode(), c.want, out)
			}
		})
	}
}

// runWithTimeout runs cmd, returning its combined output; a process still
// running after d is killed and reported as an error.
func runWithTimeout(cmd *exec.Cmd, d time.Duration) (string, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), errors.New("still running after " + d.String())
	}
}
