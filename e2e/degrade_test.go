package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/testutil"
	"github.com/proofline/proofline/query/chdb"
)

// readyz is /readyz's answer.
type readyz struct {
	code   int
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

func (s *server) readyz(query string) readyz {
	s.t.Helper()
	code, raw := s.get("", "/readyz"+query)
	var r readyz
	if err := json.Unmarshal(raw, &r); err != nil {
		s.t.Fatalf("/readyz%s: %d %s", query, code, raw)
	}
	r.code = code
	return r
}

// waitSpans polls /v1/spans until every id in want is there, once.
func waitSpans(t *testing.T, s *server, q string, want []string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := spanIDs(t, s, q)
		missing := 0
		for _, id := range want {
			if got[id] != 1 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d spans not stored (once) after 90s\n%s", missing, len(want), s.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSpansOverManyDays: one request of 120 valid records over 120 UTC
// days used to make every insert fail ("Too many partitions for single
// INSERT block (more than 100)") and stall the span store for good; now
// they are all stored, and so are the records posted after them.
func TestSpansOverManyDays(t *testing.T) {
	s := startServer(t, t.TempDir(), "--retention-days", "400")
	tok, q := s.token("gw-1", "ingest", "1h"), s.token("sre", "query", "1h")
	day0 := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -119).Add(9 * time.Hour)
	var spread []map[string]any
	var want []string
	for i := range 120 {
		r := record(fmt.Sprintf("days-%03d", i))
		at := day0.AddDate(0, 0, i)
		r["ts_start"], r["ts_end"] = at.Format(time.RFC3339Nano), at.Add(10*time.Millisecond).Format(time.RFC3339Nano)
		spread = append(spread, r)
		want = append(want, r["record_id"].(string))
	}
	if code, _, pr, err := s.post(tok, jsonArray(t, spread...), nil); err != nil || code != 202 || pr.Accepted != 120 {
		t.Fatalf("post 120 days: %d %+v %v", code, pr, err)
	}
	later := ids("after-days", 30)
	if code, _, pr, err := s.post(tok, jsonArray(t, records(later)...), nil); err != nil || code != 202 || pr.Accepted != 30 {
		t.Fatalf("post later records: %d %+v %v", code, pr, err)
	}
	waitSpans(t, s, q, append(want, later...))
}

// clickHouseAt serves ClickHouse's HTTP interface on addr from an engine
// in the test's process (chDB, the same engine proofline embeds), for
// a proofline that is given it as an external server with --clickhouse.
func clickHouseAt(t *testing.T, addr string) clickhouse.Conn {
	t.Helper()
	// Not t.TempDir: libchdb cannot stop, its background merges go on
	// after Close and would race the removal ("directory not empty").
	dir, err := os.MkdirTemp("", "e2e-clickhouse-")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := chdb.Open(context.Background(), chdb.Options{DataDir: filepath.Join(dir, "clickhouse")})
	if err != nil {
		t.Fatalf("chDB: %v", err)
	}
	rt := eng.Transport()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI, out.URL.Scheme, out.URL.Host = "", "http", "chdb.embedded"
		resp, err := rt.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol: clickhouse.HTTP, Addr: []string{"chdb.embedded:8123"},
		TransportFunc: func(*http.Transport) (http.RoundTripper, error) { return rt, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Close()
		// Stop the engine's merges (it lives as long as this process),
		// then remove its data, again until no merge it had started
		// writes there any more.
		_ = conn.Exec(context.Background(), "SYSTEM STOP MERGES")
		_ = conn.Close()
		_ = eng.Close()
		testutil.Eventually(t, 30*time.Second, func() bool { return os.RemoveAll(dir) == nil }, "the test ClickHouse's data removed")
	})
	return conn
}

// TestClickHouseDownAtStart: a ClickHouse server that is unreachable when
// proofline starts does not stop it: ingest answers 202, the signer logs
// and proofs are served, /readyz is 503 naming the span store (and 200
// with ?exclude=spanstore); once ClickHouse answers, the span role catches
// up by itself. A record ClickHouse then refuses goes to the dead letters
// with ClickHouse's reason while the records around it are stored.
func TestClickHouseDownAtStart(t *testing.T) {
	chAddr, natsAddr := freeAddr(t), freeAddr(t) // nothing listens on chAddr yet
	data := t.TempDir()
	s := startDegraded(t, data, "--clickhouse", "http://"+chAddr, "--nats-listen", natsAddr)
	tok, q := s.token("gw-1", "ingest", "1h"), s.token("auditor", "query", "1h")

	early := ids("ch-down", 5)
	if code, _, pr, err := s.post(tok, jsonArray(t, records(early)...), nil); err != nil || code != 202 || pr.Accepted != len(early) {
		t.Fatalf("post while ClickHouse is down: %d %+v %v\n%s", code, pr, err, s.logs())
	}
	for _, id := range early {
		s.waitProof(q, id)
	}
	r := s.readyz("")
	if r.code != http.StatusServiceUnavailable || r.Ready || r.Checks["spanstore"] == "ok" || r.Checks["spanstore"] == "" {
		t.Fatalf("/readyz with ClickHouse down: %d %+v, want 503 naming spanstore", r.code, r)
	}
	for _, c := range []string{"jetstream", "log", "signer", "http"} {
		if r.Checks[c] != "ok" {
			t.Fatalf("/readyz with ClickHouse down: check %s is %q, want ok: %+v", c, r.Checks[c], r)
		}
	}
	if r := s.readyz("?exclude=spanstore"); r.code != http.StatusOK || !r.Ready {
		t.Fatalf("/readyz?exclude=spanstore with ClickHouse down: %d %+v", r.code, r)
	}
	if code, raw := s.get(q, "/v1/kpi/latency"); code == http.StatusOK {
		t.Fatalf("latency KPI without a span store answered 200: %s", raw)
	}

	// ClickHouse comes up: the role connects, migrates and catches up.
	ch := clickHouseAt(t, chAddr)
	deadline := time.Now().Add(90 * time.Second)
	for s.readyz("").code != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("not ready 90s after ClickHouse came up: %+v\n%s", s.readyz(""), s.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitSpans(t, s, q, early)

	// A record ClickHouse refuses (a constraint of the operator's) is
	// dead-lettered with ClickHouse's reason; the others are stored, and
	// so is everything posted after it.
	ctx := ctxT(t, 90*time.Second)
	if err := ch.Exec(ctx, `ALTER TABLE spans ADD CONSTRAINT no_poison CHECK NOT startsWith(record_id, 'poison')`); err != nil {
		t.Fatal(err)
	}
	mixed := append(ids("around", 4), "poison-1")
	mixed = append(mixed, ids("behind", 4)...)
	if code, _, pr, err := s.post(tok, jsonArray(t, records(mixed)...), nil); err != nil || code != 202 || pr.Accepted != len(mixed) {
		t.Fatalf("post: %d %+v %v", code, pr, err)
	}
	after := ids("after-poison", 5)
	if code, _, _, err := s.post(tok, jsonArray(t, records(after)...), nil); err != nil || code != 202 {
		t.Fatalf("post: %d %v", code, err)
	}
	var good []string
	for _, id := range mixed {
		if id != "poison-1" {
			good = append(good, id)
		}
	}
	waitSpans(t, s, q, append(good, after...))
	s.waitProof(q, "poison-1") // the log has it regardless

	natsTok, err := os.ReadFile(filepath.Join(data, "keys", "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	js := jetStreamAt(t, "nats://"+natsAddr, nats.Token(strings.TrimSpace(string(natsTok))))
	dead, err := js.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	var dm *jetstream.RawStreamMsg
	for {
		dm, err = dead.GetLastMsgForSubject(ctx, bus.SubjectDeadLetterPrefix+"spanstore")
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the refused record was not dead-lettered: %v\n%s", err, s.logs())
		case <-time.After(100 * time.Millisecond):
		}
	}
	reason := dm.Header.Get(bus.HeaderDeadLetterReason)
	if !strings.Contains(string(dm.Data), `"record_id":"poison-1"`) || !strings.Contains(reason, "no_poison") || !strings.Contains(reason, "469") {
		t.Fatalf("dead letter: %s\nreason %q, want poison-1 with ClickHouse's VIOLATED_CONSTRAINT (469) text", dm.Data, reason)
	}
	if got := spanIDs(t, s, q)["poison-1"]; got != 0 {
		t.Fatalf("the refused record is in the span store %d times", got)
	}
}

// TestSpanStoreUpgrade: a data directory of an earlier version, whose
// span writer read a `spanstore` JetStream consumer and kept no cursor in
// the log, is converted at start: the consumer is removed, so the stream
// no longer holds records for it, and the span store follows the log from
// leaf 0 without storing a call twice (rows and rollups count each once).
func TestSpanStoreUpgrade(t *testing.T) {
	data := t.TempDir()
	natsAddr := freeAddr(t)
	s := startServer(t, data, "--nats-listen", natsAddr)
	tok, q := s.token("gw-1", "ingest", "1h"), s.token("auditor", "query", "1h")
	post := func(s *server, all []string) {
		t.Helper()
		recs := records(all)
		start := time.Now().UTC().Add(-time.Minute)
		for i := range recs {
			recs[i]["ts_start"] = start.Format(time.RFC3339Nano)
			recs[i]["ts_end"] = start.Add(10 * time.Millisecond).Format(time.RFC3339Nano)
		}
		for i := 0; i < len(recs); i += 100 {
			if code, _, pr, err := s.post(tok, jsonArray(t, recs[i:min(len(recs), i+100)]...), nil); err != nil || code != 202 {
				t.Fatalf("post: %d %+v %v", code, pr, err)
			}
		}
	}
	before := ids("pre-upgrade", 300)
	post(s, before)
	waitSpans(t, s, q, before)

	// What the earlier version left: its span writer's durable consumer,
	// holding the records it has not read yet.
	ctx := ctxT(t, 2*time.Minute)
	natsTok, err := os.ReadFile(filepath.Join(data, "keys", "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	js := jetStreamAt(t, "nats://"+natsAddr, nats.Token(strings.TrimSpace(string(natsTok))))
	if _, err := js.CreateOrUpdateConsumer(ctx, bus.StreamName, jetstream.ConsumerConfig{Durable: bus.SpanConsumer, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	unread := ids("unread", 50)
	post(s, unread)
	s.waitProof(q, unread[49])
	stream, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs < 1 {
		t.Fatalf("the stream should hold the envelope of the 50 records the old consumer has not read: %+v %v", info, err)
	}
	s.stop()
	if err := os.RemoveAll(filepath.Join(data, "spanstore-cursor")); err != nil {
		t.Fatal(err)
	}

	s = startServer(t, data, "--nats-listen", natsAddr)
	all := append(append([]string{}, before...), unread...)
	waitSpans(t, s, q, all)
	js = jetStreamAt(t, "nats://"+natsAddr, nats.Token(strings.TrimSpace(string(natsTok))))
	if _, err := js.Consumer(ctx, bus.StreamName, bus.SpanConsumer); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("the old span consumer is still there: %v", err)
	}
	waitFor(t, "the stream to let go of the records the old consumer held", func() (bool, string) {
		stream, err := js.Stream(ctx, bus.StreamName)
		if err != nil {
			return false, err.Error()
		}
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 0, fmt.Sprintf("%+v %v", info.State, err)
	})
	code, raw := s.get(q, "/v1/kpi/latency?by=tool&window=1d")
	var got struct {
		Rows []struct {
			Calls uint64 `json:"calls"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(raw, &got); code != http.StatusOK || err != nil {
		t.Fatalf("kpi latency: %d %s", code, raw)
	}
	var calls uint64
	for _, r := range got.Rows {
		calls += r.Calls
	}
	if calls != 350 {
		t.Fatalf("the latency rollup counts %d calls, want 350 (each once)", calls)
	}
}
