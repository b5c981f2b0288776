package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// conflictResult is a result of POST /v1/records with the conflict fields.
type conflictResult struct {
	Index     int     `json:"index"`
	RecordID  string  `json:"record_id"`
	Status    string  `json:"status"`
	LeafIndex *uint64 `json:"leaf_index"`
}

type conflictResponse struct {
	Accepted   int              `json:"accepted"`
	Duplicates int              `json:"duplicates"`
	Conflicts  int              `json:"conflicts"`
	Results    []conflictResult `json:"results"`
}

// postRaw posts body and returns the status and the raw answer.
func postRaw(t *testing.T, s *server, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+"/v1/records", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// TestRecordIDsCannotBeStolen: a record whose id the log already holds
// with other content — the same record from another principal, or other
// content from the same one — is answered "conflict" with the holder's
// leaf, never "duplicate", also after a restart; the answer never names
// the holder's principal; an identical retry is still a duplicate. Two
// different records under one id that are both in the stream before the
// signer sees either (an ingest-only process) make one leaf and one dead
// letter with reason conflict, which `proofline dlq list` shows.
func TestRecordIDsCannotBeStolen(t *testing.T) {
	data := t.TempDir()
	metricsAddr := freeAddr(t)
	s := startServer(t, data, "--metrics-listen", metricsAddr)
	owner := s.token("gw-owner", "ingest", "1h")
	thief := s.token("gw-thief", "ingest", "1h")
	q := s.token("auditor", "query", "1h")

	orig := record("conflict-held")
	if code, raw := postRaw(t, s, owner, ndjson(t, orig)); code != http.StatusAccepted {
		t.Fatalf("first post: %d %s", code, raw)
	}
	var bundle struct {
		LeafIndex uint64          `json:"leaf_index"`
		Record    json.RawMessage `json:"record"`
	}
	if err := json.Unmarshal(s.waitProof(q, "conflict-held"), &bundle); err != nil {
		t.Fatal(err)
	}
	changed := record("conflict-held")
	changed["policy"] = map[string]any{"decision": "deny"}

	expectConflict := func(name string, tok string, rec map[string]any) {
		t.Helper()
		// Next to a new record, so the request itself is a 202.
		fresh := "conflict-fresh-" + strings.ReplaceAll(name, " ", "-")
		code, raw := postRaw(t, s, tok, ndjson(t, record(fresh), rec))
		var pr conflictResponse
		if err := json.Unmarshal(raw, &pr); err != nil || code != http.StatusAccepted {
			t.Fatalf("%s: %d %s %v", name, code, raw, err)
		}
		r := pr.Results[1]
		if r.Status != "conflict" || r.LeafIndex == nil || *r.LeafIndex != bundle.LeafIndex || pr.Conflicts != 1 || pr.Accepted != 1 {
			t.Fatalf("%s: %s, want the second record a conflict with leaf %d", name, raw, bundle.LeafIndex)
		}
		if strings.Contains(string(raw), "gw-owner") {
			t.Fatalf("%s: the answer names the holder's principal: %s", name, raw)
		}
		// Alone, the request is refused as a whole.
		if code, raw := postRaw(t, s, tok, ndjson(t, rec)); code != http.StatusConflict {
			t.Fatalf("%s alone: %d %s, want 409", name, code, raw)
		}
	}
	expectConflict("same record other principal", thief, orig)
	expectConflict("other content same principal", owner, changed)
	// The identical retry is a duplicate, not a conflict.
	code, raw := postRaw(t, s, owner, ndjson(t, orig))
	var retry conflictResponse
	if json.Unmarshal(raw, &retry) != nil || code != http.StatusAccepted || retry.Duplicates != 1 {
		t.Fatalf("identical retry: %d %s, want a duplicate", code, raw)
	}
	waitMetric(t, metricsAddr, "proofline_ingest_records_total{result=conflict}", 4)

	// After a restart, from the index on disk.
	s.stop()
	s.start()
	expectConflict("after restart", thief, orig)

	// Both copies in the stream before any signer reads them.
	s.stop()
	ing := startServer(t, data, "--roles", "ingest")
	for _, tok := range []string{owner, thief} {
		if code, raw := postRaw(t, ing, tok, ndjson(t, record("conflict-in-flight"))); code != http.StatusAccepted {
			t.Fatalf("ingest-only post: %d %s", code, raw)
		}
	}
	ing.stop()
	s = startServer(t, data, "--metrics-listen", metricsAddr)
	var proof struct {
		Record struct {
			IngestedBy string `json:"ingested_by"`
		} `json:"record"`
	}
	if err := json.Unmarshal(s.waitProof(q, "conflict-in-flight"), &proof); err != nil {
		t.Fatal(err)
	}
	if proof.Record.IngestedBy != "gw-owner" {
		t.Fatalf("the leaf is %q's record, want the first one stored (gw-owner's)", proof.Record.IngestedBy)
	}
	waitMetric(t, metricsAddr, "proofline_signer_records_total{result=conflict}", 1)
	var list struct {
		DeadLetters []struct {
			RecordID string    `json:"record_id"`
			Reason   string    `json:"reason"`
			Consumer string    `json:"consumer"`
			Time     time.Time `json:"time"`
			Error    string    `json:"error"`
		} `json:"dead_letters"`
	}
	out, errOut, code := cli(t, "dlq", "list", "--server", s.url, "--token", q, "--reason", "conflict", "--json")
	if code != 0 {
		t.Fatalf("dlq list: exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("dlq list --json: %v: %s", err, out)
	}
	if len(list.DeadLetters) != 1 {
		t.Fatalf("dlq list: %s, want one conflict", out)
	}
	if d := list.DeadLetters[0]; d.RecordID != "conflict-in-flight" || d.Reason != "conflict" || d.Consumer != "signer" || d.Time.IsZero() || strings.Contains(d.Error, "gw-owner") {
		t.Fatalf("dead letter %+v, want conflict-in-flight, reason conflict, from the signer", d)
	}
	out, _, code = cli(t, "dlq", "list", "--server", s.url, "--token", q)
	if code != 0 || !strings.Contains(out, "conflict-in-flight") || !strings.Contains(out, "conflict") {
		t.Fatalf("dlq list table: exit %d\n%s", code, out)
	}
	t.Logf("proofline dlq list:\n%s", out)
	// One leaf for each record id.
	counts, _ := logRecordIDs(t, s, q, filepath.Join(data, "keys", "log.pub"))
	for id, n := range counts {
		if n != 1 {
			t.Fatalf("%s is %d leaves", id, n)
		}
	}
	if counts["conflict-in-flight"] != 1 || counts["conflict-held"] != 1 {
		t.Fatalf("log: %v", counts)
	}
}
