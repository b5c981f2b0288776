package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestIngestRejectsNonIJSON: over HTTP, a record that is JSON but not
// I-JSON (RFC 7493) is rejected with the offending member's JSON path and
// never stored under one reading of it, while its valid neighbours in the
// same request are stored. Hand-written JSON: encoding/json cannot produce
// a duplicate name or a lone surrogate.
func TestIngestRejectsNonIJSON(t *testing.T) {
	s := startServer(t, t.TempDir())
	tok := s.token("gw-1", "ingest", "1h")
	q := s.token("auditor", "query", "1h")

	rec := func(id, extra string) string {
		return `{"record_id":"` + id + `","ts_start":"2026-11-25T10:00:00Z","ts_end":"2026-11-25T10:00:01Z",` +
			`"actor":{"id":"agent-7","type":"agent"},"tool":{"name":"search_tickets"},` +
			`"policy":{"decision":"allow"},"outcome":{"status":"ok"}` + extra + `}`
	}
	cases := []struct {
		id, body, path string
	}{
		{"ij-ok-1", rec("ij-ok-1", ""), ""},
		{"ij-decision", strings.Replace(rec("ij-decision", ""), `"decision":"allow"`, `"decision":"allow","decision":"deny"`, 1), "$.policy.decision"},
		{"ij-id-a", strings.Replace(rec("ij-id-a", ""), `"record_id":"ij-id-a"`, `"record_id":"ij-id-a","record_id":"ij-id-b"`, 1), "$.record_id"},
		{"ij-surrogate", rec("ij-surrogate", `,"region":"\ud800"`), "$.region"},
		{"ij-underflow", rec("ij-underflow", `,"cost":{"amount":1e-400}`), "$.cost.amount"},
		{"ij-fraction", strings.Replace(rec("ij-fraction", ""), `10:00:01Z`, `10:00:01.1234567891Z`, 1), "$.ts_end"},
		{"ij-ok-2", rec("ij-ok-2", `,"region":"\ud83d\ude00"`), ""},
	}
	var parts []string
	for _, c := range cases {
		parts = append(parts, c.body)
	}
	code, _, pr, err := s.post(tok, []byte("["+strings.Join(parts, ",\n")+"]"), nil)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("post: %d %v", code, err)
	}
	if pr.Accepted != 2 || pr.Rejected != len(cases)-2 {
		t.Fatalf("%+v, want 2 accepted, %d rejected", pr, len(cases)-2)
	}
	for i, c := range cases {
		r := pr.Results[i]
		if c.path == "" {
			if r.Status != "accepted" {
				t.Errorf("%s: %+v, want accepted", c.id, r)
			}
			continue
		}
		named := false
		for _, e := range r.Errors {
			named = named || e.Path == c.path
		}
		if r.Status != "rejected" || !named {
			t.Errorf("%s: %+v, want rejected naming %s", c.id, r, c.path)
		}
	}
	// The valid neighbours are in the log; the rejected records are not,
	// under either reading (ij-id-b is the second record_id above).
	s.waitProof(q, "ij-ok-1")
	s.waitProof(q, "ij-ok-2")
	for _, id := range []string{"ij-decision", "ij-id-a", "ij-id-b", "ij-surrogate", "ij-underflow", "ij-fraction"} {
		if code, body := s.get(q, "/v1/proof/"+id); code != http.StatusNotFound {
			t.Errorf("%s: proof answered %d %s, want 404", id, code, body)
		}
	}
}
