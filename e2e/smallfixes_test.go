package e2e

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestErrorShape: every error answer of the API, the router's own 404 and
// 405 included, is {"error":{"code","message"}} in JSON, and an over-long
// tile path is 414 or 404, never a 500.
func TestErrorShape(t *testing.T) {
	s := startServer(t, t.TempDir(), "--roles", "ingest,signer")
	q := s.token("auditor", "query", "1h")
	tests := []struct {
		name, method, path, token string
		status                    []int
		code                      string
	}{
		{"unknown path", "GET", "/nope", "", []int{404}, "not_found"},
		{"wrong method", "POST", "/readyz", "", []int{405}, "method_not_allowed"},
		{"wrong method on ingest", "GET", "/v1/records", "", []int{405}, "method_not_allowed"},
		{"no token", "GET", "/v1/proof/x", "", []int{401}, "unauthenticated"},
		{"5,000-character tile segment", "GET", "/tile/" + strings.Repeat("a", 5000), q, []int{414, 404}, ""},
		{"long tile segment", "GET", "/tile/0/" + strings.Repeat("7", 200), q, []int{404}, "not_found"},
		{"missing tile", "GET", "/tile/0/999", q, []int{404}, "not_found"},
		{"unknown record", "GET", "/v1/proof/nope", q, []int{404}, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.url+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error *struct{ Code, Message string } `json:"error"`
			}
			decErr := json.NewDecoder(resp.Body).Decode(&body)
			ok := false
			for _, st := range tc.status {
				ok = ok || resp.StatusCode == st
			}
			if !ok || resp.Header.Get("Content-Type") != "application/json" || decErr != nil || body.Error == nil || body.Error.Message == "" {
				t.Fatalf("%s %s: %d %q %v %+v, want one of %v in the JSON error shape", tc.method, tc.path[:min(len(tc.path), 40)], resp.StatusCode, resp.Header.Get("Content-Type"), decErr, body.Error, tc.status)
			}
			if tc.code != "" && body.Error.Code != tc.code {
				t.Fatalf("code %q, want %q", body.Error.Code, tc.code)
			}
		})
	}
}

// TestTokenIssueNeedsDataDir: a mistyped --data is refused with exit 2
// and a message naming the problem, and nothing is created (a new key
// would sign tokens no server accepts).
func TestTokenIssueNeedsDataDir(t *testing.T) {
	typo := filepath.Join(t.TempDir(), "proofline-dta")
	out, errOut, code := cli(t, "token", "issue", "--data", typo, "--principal", "gw-1", "--scope", "ingest", "--ttl", "1h")
	if code != 2 || out != "" || !strings.Contains(errOut, "not a proofline data directory") {
		t.Fatalf("token issue over a missing data dir: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Stat(typo); !os.IsNotExist(err) {
		t.Fatalf("token issue created %s (%v)", typo, err)
	}
}

// populate starts a server with every role on data, stores a record and
// waits until it is provable and in the span store.
func populate(t *testing.T, data, id string) *server {
	t.Helper()
	s := startServer(t, data)
	tok := s.token("gw-1", "ingest", "1h")
	if code, _, pr, err := s.post(tok, jsonArray(t, record(id)), nil); err != nil || code != http.StatusAccepted {
		t.Fatalf("post: %d %+v %v", code, pr, err)
	}
	q := s.token("auditor", "query", "1h")
	s.waitProof(q, id)
	waitSpan(t, s, q, id)
	return s
}

// waitSpan waits for the span of record id in /v1/spans.
func waitSpan(t *testing.T, s *server, q, id string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := s.get(q, "/v1/spans?tool=search_tickets&limit=1000")
		if code == http.StatusOK && strings.Contains(string(body), `"record_id":"`+id+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("span %s not stored after 60s: %d %s", id, code, body)
		}
	}
}

// TestDataDirPrivate: everything serve creates in a fresh data directory
// — keys, log, JetStream store, record index, span store — is readable by
// its owner only (directories 0700, files 0600).
func TestDataDirPrivate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data") // serve makes it
	s := populate(t, data, "perm-1")
	s.stop()
	seen := map[string]bool{}
	err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // chDB's links; their targets are walked themselves
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		seen[strings.Split(rel, string(filepath.Separator))[0]] = true
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: open to other users", rel, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".", "keys", "log", "nats", "index", "clickhouse"} {
		if !seen[want] {
			t.Errorf("the walk did not see %s (saw %v)", want, seen)
		}
	}
}

// TestCopiedDataDirStarts: a data directory copied with its symbolic
// links dereferenced (cp -rL, as some backups restore) starts: the span
// store's links are put back, and the records are still there and
// provable.
func TestCopiedDataDirStarts(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := populate(t, data, "copy-1")
	s.stop()
	copied := filepath.Join(t.TempDir(), "restored")
	if out, err := exec.Command("cp", "-rL", data, copied).CombinedOutput(); err != nil {
		t.Fatalf("cp -rL: %v %s", err, out)
	}
	if fi, err := os.Lstat(filepath.Join(copied, "clickhouse", "metadata", "default")); err != nil || fi.Mode()&fs.ModeSymlink != 0 {
		t.Fatalf("the copy should have a directory where chDB keeps a link: %v %v", fi, err)
	}
	s2 := startServer(t, copied)
	q := s2.token("auditor", "query", "1h")
	s2.waitProof(q, "copy-1")
	waitSpan(t, s2, q, "copy-1")
	tok := s2.token("gw-1", "ingest", "1h")
	if code, _, pr, err := s2.post(tok, jsonArray(t, record("copy-2")), nil); err != nil || code != http.StatusAccepted {
		t.Fatalf("post to the copy: %d %+v %v", code, pr, err)
	}
	waitSpan(t, s2, q, "copy-2")
}
