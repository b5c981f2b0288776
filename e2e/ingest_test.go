package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proofline/proofline/internal/testpki"
)

// TestRetriesMakeOneLeaf: the same batch posted three times, and once more
// after JetStream's duplicate window has passed, gives one leaf per record.
func TestRetriesMakeOneLeaf(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, "--dedup-window", "1s")
	tok := s.token("gw-1", "ingest", "1h")
	q := s.token("auditor", "query", "1h")
	batch := ids("retry", 25)
	body := jsonArray(t, records(batch)...)

	wantStatus := []string{"accepted", "duplicate", "duplicate"}
	for attempt, want := range wantStatus {
		code, _, pr, err := s.post(tok, body, nil)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("attempt %d: %d %v", attempt, code, err)
		}
		for _, r := range pr.Results {
			// The first retry may race the signer; either way it must not
			// be accepted as new.
			if r.Status != want {
				t.Fatalf("attempt %d: %s is %q, want %q", attempt, r.RecordID, r.Status, want)
			}
		}
	}
	for _, id := range batch {
		s.waitProof(q, id)
	}
	// Past the JetStream window, the log's own index still knows them.
	time.Sleep(1500 * time.Millisecond)
	code, _, pr, err := s.post(tok, body, nil)
	if err != nil || code != http.StatusAccepted || pr.Duplicates != len(batch) {
		t.Fatalf("post after the dedup window: %d %+v %v, want every record a duplicate", code, pr, err)
	}
	// And after a restart.
	s.stop()
	s.start()
	code, _, pr, err = s.post(tok, body, nil)
	if err != nil || code != http.StatusAccepted || pr.Duplicates != len(batch) {
		t.Fatalf("post after restart: %d %+v %v, want every record a duplicate", code, pr, err)
	}
	time.Sleep(500 * time.Millisecond)
	counts, size := logRecordIDs(t, s, q, filepath.Join(data, "keys", "log.pub"))
	if size != uint64(len(batch)) {
		t.Fatalf("log has %d leaves, want %d", size, len(batch))
	}
	for _, id := range batch {
		if counts[id] != 1 {
			t.Fatalf("%s appears %d times in the log", id, counts[id])
		}
	}
}

// TestBadInput: every kind of bad request gets its documented status and
// message, and valid records next to invalid ones are still stored.
func TestBadInput(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, "--max-body", "200000", "--rate", "5", "--burst", "60")
	tok := s.token("gw-1", "ingest", "1h")
	other := s.token("gw-2", "ingest", "1h")
	queryTok := s.token("auditor", "query", "1h")
	expiring := s.token("gw-1", "ingest", "1s")

	good := record("bad-neighbour-ok")
	wrongType := record("bad-wrong-type")
	wrongType["tool"] = map[string]any{"name": 42}
	missing := record("bad-missing")
	delete(missing, "actor")
	badEnum := record("bad-enum")
	badEnum["policy"] = map[string]any{"decision": "maybe"}
	huge := record("bad-huge")
	huge["attributes"] = map[string]any{"blob": strings.Repeat("x", 70_000)}

	mixed := append(ndjson(t, good, wrongType), []byte("{not json\n")...)
	mixed = append(mixed, ndjson(t, missing, badEnum)...)
	code, _, pr, err := s.post(tok, mixed, nil)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("mixed ndjson: %d %v", code, err)
	}
	if pr.Accepted != 1 || pr.Rejected != 4 {
		t.Fatalf("mixed ndjson: %+v, want 1 accepted 4 rejected", pr)
	}
	wantPaths := map[int]string{1: "$.tool.name", 2: "$", 3: "$.actor", 4: "$.policy.decision"}
	for i, path := range wantPaths {
		r := pr.Results[i]
		if r.Status != "rejected" || len(r.Errors) == 0 {
			t.Fatalf("result %d: %+v, want rejected with errors", i, r)
		}
		found := false
		for _, e := range r.Errors {
			found = found || e.Path == path
		}
		if !found {
			t.Fatalf("result %d: errors %+v do not name %s", i, r.Errors, path)
		}
	}
	s.waitProof(queryTok, "bad-neighbour-ok")

	// A pretty-printed record followed by a broken line: the record is
	// kept, the line is rejected alone, and result i is record i.
	pretty, err := json.MarshalIndent(record("bad-pretty-ok"), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	prettyBody := append(append(pretty, []byte("\n{not json\n")...), ndjson(t, record("bad-pretty-after"))...)
	code, _, pr, err = s.post(tok, prettyBody, nil)
	if err != nil || code != http.StatusAccepted || pr.Accepted != 2 || pr.Rejected != 1 || len(pr.Results) != 3 {
		t.Fatalf("pretty object then a bad line: %d %+v %v, want 2 accepted and 1 rejected", code, pr, err)
	}
	for i, want := range []struct{ id, status string }{{"bad-pretty-ok", "accepted"}, {"", "rejected"}, {"bad-pretty-after", "accepted"}} {
		if r := pr.Results[i]; r.Index != i || r.RecordID != want.id || r.Status != want.status {
			t.Fatalf("pretty object then a bad line: result %d is %+v, want %s %q", i, r, want.status, want.id)
		}
	}
	s.waitProof(queryTok, "bad-pretty-ok")

	cases := []struct {
		name     string
		token    string
		body     []byte
		headers  map[string]string
		status   int
		code     string
		contains string
	}{
		{"malformed array", tok, []byte(`[{"record_id":"x"},`), nil, 400, "bad_request", "malformed"},
		// A broken pretty-printed record: where the records after it start
		// is unknown, so nothing is stored and the line is named.
		{"broken pretty object", tok, append(ndjson(t, record("bad-before-broken")), []byte("{\n  \"record_id\": x,\n  \"ts_start\": 1\n}\n")...), nil, 400, "bad_request", "line 2"},
		{"empty body", tok, nil, nil, 400, "bad_request", "empty"},
		{"all invalid", tok, ndjson(t, wrongType), nil, 400, "", ""},
		{"oversize body", tok, bytes.Repeat([]byte(" "), 250_000), nil, 413, "too_large", "too large"},
		{"oversize record", tok, ndjson(t, huge, record("bad-huge-neighbour")), nil, 202, "", ""},
		{"gzip bomb", tok, gz(t, bytes.Repeat([]byte(" "), 5_000_000)), map[string]string{"Content-Encoding": "gzip"}, 413, "too_large", "decompression"},
		{"bad gzip", tok, []byte("definitely not gzip"), map[string]string{"Content-Encoding": "gzip"}, 400, "bad_request", "decompress"},
		{"bad zstd", tok, []byte("definitely not zstd"), map[string]string{"Content-Encoding": "zstd"}, 400, "bad_request", "decompress"},
		{"unknown encoding", tok, gz(t, ndjson(t, good)), map[string]string{"Content-Encoding": "br"}, 415, "unsupported_encoding", "br"},
		{"no token", "", ndjson(t, good), nil, 401, "unauthenticated", "missing"},
		{"garbage token", "abc.def.ghi", ndjson(t, good), nil, 401, "unauthenticated", "invalid"},
		{"wrong scope", queryTok, ndjson(t, good), nil, 403, "forbidden", "scope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, pr, err := s.post(c.token, c.body, c.headers)
			if err != nil {
				t.Fatal(err)
			}
			if code != c.status {
				t.Fatalf("status %d, want %d (%+v)", code, c.status, pr)
			}
			if c.code != "" && (pr.Error == nil || pr.Error.Code != c.code || !strings.Contains(pr.Error.Message, c.contains)) {
				t.Fatalf("error %+v, want code %q mentioning %q", pr.Error, c.code, c.contains)
			}
		})
	}
	// The oversize record was rejected alone; its neighbour is stored.
	s.waitProof(queryTok, "bad-huge-neighbour")
	// The body that failed as a whole stored nothing, not even its valid
	// first record.
	if code, body := s.get(queryTok, "/v1/proof/bad-before-broken"); code != http.StatusNotFound {
		t.Fatalf("a record of a body answered 400 is in the log: %d %s", code, body)
	}

	t.Run("expired token", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond)
		code, _, pr, err := s.post(expiring, ndjson(t, good), nil)
		if err != nil || code != 401 || pr.Error == nil || !strings.Contains(pr.Error.Message, "expired") {
			t.Fatalf("expired token: %d %+v %v", code, pr.Error, err)
		}
	})
	t.Run("rate limit", func(t *testing.T) {
		batch := records(ids("rl", 60))
		code, _, _, err := s.post(other, jsonArray(t, batch...), nil)
		if err != nil || code != 202 {
			t.Fatalf("first burst: %d %v", code, err)
		}
		code, hdr, pr, err := s.post(other, jsonArray(t, batch[:10]...), nil)
		if err != nil || code != http.StatusTooManyRequests || pr.Error == nil || pr.Error.Code != "rate_limited" {
			t.Fatalf("over the rate: %d %+v %v, want 429", code, pr.Error, err)
		}
		ra, err := strconv.Atoi(hdr.Get("Retry-After"))
		if err != nil || ra < 1 {
			t.Fatalf("Retry-After %q, want a positive number of seconds", hdr.Get("Retry-After"))
		}
		// Another principal is not affected.
		if code, _, _, _ := s.post(tok, ndjson(t, record("rl-other-principal")), nil); code != 202 {
			t.Fatalf("another principal: %d, want 202", code)
		}
		// More than the burst in one request can never pass: 413, even for
		// a principal with a full bucket. (A principal already over its
		// rate gets 429 before its body is read, the cheaper answer.)
		fresh := s.token("gw-fresh", "ingest", "1h")
		code, _, _, _ = s.post(fresh, jsonArray(t, records(ids("rl-big", 61))...), nil)
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("batch over the burst: %d, want 413", code)
		}
	})
}

// TestServeRejectsBadConfig: configuration mistakes stop the server at
// once with exit 2 and a message naming the problem, before any engine
// starts or any data is written. Among them: the external NATS's
// credential and TLS flags, which are for --nats and whose files are
// checked at start, and the exposed NATS's certificate flags, which need
// each other and --nats-listen.
func TestServeRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	badSLO := filepath.Join(dir, "slo.yaml")
	if err := os.WriteFile(badSLO, []byte("slos:\n  - group: g\n    target: 99\n    latency_ms: 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pki := testpki.New(t)
	missing := filepath.Join(dir, "nope.creds")
	const ext = "nats://127.0.0.1:1"
	for i, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--slo", badSLO}, "target"},
		{[]string{"--roles", "spanstore"}, "signer"},
		{[]string{"--roles", "everything"}, "unknown role"},
		{[]string{"--log-level", "loud"}, "log-level"},
		{[]string{"--nats-creds", missing}, "external NATS"},
		{[]string{"--nats", ext, "--nats-creds", missing}, "nope.creds"},
		{[]string{"--nats", ext, "--nats-creds", pki.CAFile}, "nats creds file"},
		{[]string{"--nats", ext, "--nats-creds", missing, "--nats-token-file", missing}, "one of"},
		{[]string{"--nats", ext, "--nats-cert", pki.ClientCert}, "needs its key"},
		{[]string{"--nats", ext, "--nats-ca", pki.ClientKey}, "no PEM certificate"},
		{[]string{"--nats-listen-cert", pki.ServerCert, "--nats-listen-key", pki.ServerKey}, "--nats-listen"},
		{[]string{"--nats", ext, "--nats-listen", "127.0.0.1:0", "--nats-listen-cert", pki.ServerCert, "--nats-listen-key", pki.ServerKey}, "embedded NATS"},
		{[]string{"--nats-listen", "127.0.0.1:0", "--nats-listen-cert", pki.ServerCert}, "go together"},
	} {
		data := filepath.Join(dir, fmt.Sprintf("data-%d", i))
		_, errOut, code := cli(t, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0"}, c.args...)...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("serve %v: exit %d %q, want 2 mentioning %q", c.args, code, errOut, c.want)
		}
		if _, err := os.Stat(data); err == nil {
			t.Errorf("serve %v created the data dir before rejecting its configuration", c.args)
		}
	}
	// Every mistake of one start is reported at once, each naming its
	// flag, rather than one per attempt.
	for i, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--retention-days", "-1", "--checkpoint-interval", "10ms", "--max-records", "-5", "--nats-replicas", "9", "--dedup-window", "-1s"},
			[]string{"--retention-days", "--checkpoint-interval", "--max-records", "--nats-replicas", "--dedup-window"}},
		{[]string{"--clickhouse", "clickhouse://ch:9000/db?dial_timeout=soon", "--listen", "nowhere", "--log-level", "loud", "--roles", "everything", "--slo", badSLO},
			[]string{"--clickhouse", "--listen", "--log-level", "unknown role", "target"}},
		{[]string{"--clickhouse-cluster", "a b", "--rate", "-1", "--stream-max-age", "1m", "--metrics-listen", "9090", "--nats-creds", missing},
			[]string{"--clickhouse-cluster", "--rate", "--stream-max-age", "--metrics-listen", "external NATS"}},
	} {
		data := filepath.Join(dir, fmt.Sprintf("data-many-%d", i))
		_, errOut, code := cli(t, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0"}, c.args...)...)
		for _, want := range c.want {
			if code != 2 || !strings.Contains(errOut, want) {
				t.Errorf("serve %v: exit %d %q, want 2 mentioning %q", c.args, code, errOut, want)
			}
		}
		if _, err := os.Stat(data); err == nil {
			t.Errorf("serve %v created the data dir before rejecting its configuration", c.args)
		}
	}
}

// TestIngestBeforeAnySigner: records accepted by an ingest-only process
// on a fresh data directory, before any signer has ever run, wait in the
// stream and all reach the log once a signer starts. (The stream keeps a
// record until every consumer has it; the signer's consumer exists from
// the first start whatever the roles.)
func TestIngestBeforeAnySigner(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, "--roles", "ingest")
	tok := s.token("gw-1", "ingest", "1h")
	list := ids("early", 40)
	if code, _, pr, err := s.post(tok, jsonArray(t, records(list)...), nil); err != nil || code != 202 || pr.Accepted != len(list) {
		t.Fatalf("post: %d %+v %v", code, pr, err)
	}
	s.stop()

	s = startServer(t, data)
	acked := map[string]bool{}
	for _, id := range list {
		acked[id] = true
	}
	checkExactlyOnce(t, s, s.token("auditor", "query", "1h"), acked)
}

// TestMinimalAnswer: with "Prefer: return=minimal" the answer lists only
// the records that were not accepted, each by its index in the request,
// with complete counts and Preference-Applied; the records accepted are
// stored as with a full answer, and a request without the preference
// still lists every record.
func TestMinimalAnswer(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	tok := s.token("gw-1", "ingest", "1h")
	q := s.token("auditor", "query", "1h")

	first, second := record("minimal-1"), record("minimal-2")
	bad := record("minimal-bad")
	delete(bad, "actor")
	body := ndjson(t, first, second, bad, first)
	type want struct {
		index  int
		status string
	}
	for _, c := range []struct {
		name    string
		prefer  string
		counts  [3]int // accepted, duplicates, rejected
		results []want
		applied bool
	}{
		{"new records", "return=minimal", [3]int{2, 1, 1}, []want{{2, "rejected"}, {3, "duplicate"}}, true},
		{"a retry, among other preferences", `respond-async, RETURN="minimal"; foo=bar`, [3]int{0, 3, 1}, []want{{0, "duplicate"}, {1, "duplicate"}, {2, "rejected"}, {3, "duplicate"}}, true},
		{"no preference", "", [3]int{0, 3, 1}, []want{{0, "duplicate"}, {1, "duplicate"}, {2, "rejected"}, {3, "duplicate"}}, false},
		{"return=representation", "return=representation", [3]int{0, 3, 1}, []want{{0, "duplicate"}, {1, "duplicate"}, {2, "rejected"}, {3, "duplicate"}}, false},
	} {
		var headers map[string]string
		if c.prefer != "" {
			headers = map[string]string{"Prefer": c.prefer}
		}
		code, h, pr, err := s.post(tok, body, headers)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("%s: %d %v", c.name, code, err)
		}
		if got := [3]int{pr.Accepted, pr.Duplicates, pr.Rejected}; got != c.counts {
			t.Errorf("%s: counts %v, want %v", c.name, got, c.counts)
		}
		if applied := h.Get("Preference-Applied") == "return=minimal"; applied != c.applied {
			t.Errorf("%s: Preference-Applied %q", c.name, h.Get("Preference-Applied"))
		}
		var got []want
		for _, r := range pr.Results {
			got = append(got, want{r.Index, r.Status})
			if r.Status == "rejected" && (len(r.Errors) == 0 || r.Errors[0].Path != "$.actor") {
				t.Errorf("%s: rejected record without its error: %+v", c.name, r)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.results) {
			t.Errorf("%s: results %v, want %v", c.name, got, c.results)
		}
	}
	for _, id := range []string{"minimal-1", "minimal-2"} {
		s.waitProof(q, id)
	}
}
