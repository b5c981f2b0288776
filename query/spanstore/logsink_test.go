package spanstore

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLogSinkDegrades drives the span store's sink of the exporters
// runner into the embedded ClickHouse engine: while ClickHouse cannot be
// reached a batch fails whole (the runner keeps its cursor and resends)
// and Err says why, for /readyz; once it answers, the spans are stored,
// a row ClickHouse refuses and a leaf that is not a call record are set
// apart with their reasons instead of holding up the others, and the same
// batch sent again stores nothing twice (the rollups count each call once).
func TestLogSinkDegrades(t *testing.T) {
	ctx := context.Background()
	shared := testStore(t)
	ft := &faultyTransport{next: shared.engine.Transport()}
	st := throughTransport(t, shared, ft)
	if err := shared.conn.Exec(ctx, `ALTER TABLE spans ADD CONSTRAINT no_poison CHECK NOT startsWith(record_id, 'poison')`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shared.conn.Exec(context.Background(), `ALTER TABLE spans DROP CONSTRAINT no_poison`) })

	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	var leaves []Leaf
	for i := range 11 {
		id := fmt.Sprintf("ls-%02d", i)
		if i == 5 {
			id = "poison-ls"
		}
		data, err := span(id, "search", "tickets", base.Add(time.Duration(i)*time.Second), time.Millisecond, uint64(i)).Record.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, Leaf{Origin: "test.proofline/log", Index: uint64(i), Record: data})
	}
	leaves = append(leaves, Leaf{Origin: "test.proofline/log", Index: 11, Record: []byte(`{"record_id":"not-a-call"}`)})

	ls := NewLogSink(st)
	down := error(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	ft.fail.Store(&down)
	if rejected, err := ls.Write(ctx, leaves); err == nil || len(rejected) != 0 {
		t.Fatalf("write while ClickHouse is down: rejected %v, err %v; want an error for the whole batch", rejected, err)
	}
	if err := ls.Err(); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Err while down: %v", err)
	}
	if n := countSpans(t, shared); n != 0 {
		t.Fatalf("%d spans stored while ClickHouse was down", n)
	}

	ft.fail.Store(nil)
	for attempt := range 2 { // the second time as the runner resends a batch
		rejected, err := ls.Write(ctx, leaves)
		if err != nil || ls.Err() != nil {
			t.Fatalf("attempt %d: write: %v (Err %v)", attempt, err, ls.Err())
		}
		if len(rejected) != 2 || !strings.Contains(fmt.Sprint(rejected[5]), "no_poison") || !strings.Contains(fmt.Sprint(rejected[11]), "not a canonical call record") {
			t.Fatalf("attempt %d: rejected %v, want leaf 5 (ClickHouse's constraint) and leaf 11 (not a call record)", attempt, rejected)
		}
		if strings.Contains(fmt.Sprint(rejected[5]), "\n") {
			t.Fatalf("the reason is not one line: %q", rejected[5])
		}
	}
	var rows, calls uint64
	if err := shared.conn.QueryRow(ctx, `SELECT count() FROM spans`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := shared.conn.QueryRow(ctx, `SELECT sum(calls) FROM spans_latency_1m`).Scan(&calls); err != nil {
		t.Fatal(err)
	}
	if rows != 10 || calls != 10 {
		t.Fatalf("%d rows and %d calls in the rollup after a resend, want 10 each", rows, calls)
	}
}
