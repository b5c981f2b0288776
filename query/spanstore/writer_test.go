package spanstore

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/internal/bus"
)

// leaves is the log's record index as the writer sees it: every record
// published here is "in the log" at the given leaf.
type leaves map[string]uint64

func (l leaves) LookupMany(ids []string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, id := range ids {
		if i, ok := l[id]; ok {
			out[id] = i
		}
	}
	return out, nil
}

func (leaves) Origin() string { return "test.proofline/log" }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWriterDegrades drives the span writer from a real JetStream (an
// embedded nats-server) into the embedded ClickHouse engine: while
// ClickHouse cannot be reached the writer says so (Err, which /readyz
// reports) and acknowledges nothing; once it answers, the records are
// stored, and one ClickHouse refuses is dead-lettered with ClickHouse's
// reason instead of holding up the others.
func TestWriterDegrades(t *testing.T) {
	ctx := context.Background()
	shared := testStore(t)
	ft := &faultyTransport{next: shared.engine.Transport()}
	st := throughTransport(t, shared, ft)
	if err := shared.conn.Exec(ctx, `ALTER TABLE spans ADD CONSTRAINT no_poison CHECK NOT startsWith(record_id, 'poison')`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shared.conn.Exec(context.Background(), `ALTER TABLE spans DROP CONSTRAINT no_poison`) })
	b, err := bus.Open(ctx, bus.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)

	ev := leaves{}
	w := NewWriter(WriterConfig{MaxWait: 100 * time.Millisecond}, b, st, ev, slog.Default())
	if err := w.Subscribe(ctx); err != nil {
		t.Fatal(err)
	}
	down := error(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	ft.fail.Store(&down)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	var poisonData []byte
	for i := range 11 {
		id := fmt.Sprintf("w-%02d", i)
		if i == 5 {
			id = "poison-w"
		}
		sp := span(id, "search", "tickets", base.Add(time.Duration(i)*time.Second), time.Millisecond, uint64(i))
		data, err := sp.Record.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		if id == "poison-w" {
			poisonData = data
		}
		ev[id] = uint64(i)
		if _, err := b.JS.Publish(ctx, bus.SubjectRecords, data, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the writer to report ClickHouse down", func() bool { return w.Err() != nil })
	if !strings.Contains(w.Err().Error(), "connection refused") {
		t.Fatalf("writer error: %v", w.Err())
	}
	if n := countSpans(t, shared); n != 0 {
		t.Fatalf("%d spans stored while ClickHouse was down", n)
	}

	ft.fail.Store(nil)
	waitUntil(t, "the 10 storable spans", func() bool { return countSpans(t, shared) == 10 })
	waitUntil(t, "the writer to report healthy", func() bool { return w.Err() == nil })
	dead, err := b.JS.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	var dm *jetstream.RawStreamMsg
	waitUntil(t, "the refused span's dead letter", func() bool {
		dm, err = dead.GetLastMsgForSubject(ctx, bus.SubjectDeadLetterPrefix+WriterConsumer)
		return err == nil
	})
	if string(dm.Data) != string(poisonData) || !strings.Contains(dm.Header.Get(bus.HeaderDeadLetterReason), "no_poison") {
		t.Fatalf("dead letter %s with reason %q, want poison-w with ClickHouse's constraint error", dm.Data, dm.Header.Get(bus.HeaderDeadLetterReason))
	}
	// Acknowledged (or terminated): nothing is left for the writer.
	cons, err := b.JS.Consumer(ctx, bus.StreamName, WriterConsumer)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the writer's consumer to have nothing pending", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}
