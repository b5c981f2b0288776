package bus

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func open(t *testing.T, ctx context.Context, dir string) *Bus {
	t.Helper()
	b, err := Open(ctx, Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func publishRecord(t *testing.T, ctx context.Context, b *Bus, prefix string, n int) {
	t.Helper()
	for i := range n {
		m := &nats.Msg{Subject: SubjectRecords, Data: []byte(`{}`), Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", prefix, i))
		if _, err := b.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// consume fetches n messages from the durable consumer name and acks them.
func consume(t *testing.T, ctx context.Context, b *Bus, name string, n int) {
	t.Helper()
	c, err := b.Consumer(ctx, name, 30*time.Second, 1000)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < n {
		batch, err := c.Fetch(n-got, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
			got++
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
	}
}

// waitMsgs waits for the stream to hold want records.
func waitMsgs(t *testing.T, ctx context.Context, b *Bus, want uint64) {
	t.Helper()
	var have uint64
	for range 200 {
		s, err := b.JS.Stream(ctx, StreamName)
		if err != nil {
			t.Fatal(err)
		}
		if have = s.CachedInfo().State.Msgs; have == want {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("stream holds %d records, want %d", have, want)
}

// TestRecordsStayUntilEveryConsumerHasThem: a record stored before any
// signer ran is kept for it, and leaves the stream only once the signer
// and the span writer have both acknowledged it.
func TestRecordsStayUntilEveryConsumerHasThem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := open(t, ctx, t.TempDir())
	defer b.Close()

	publishRecord(t, ctx, b, "early", 10) // no process has read the stream yet
	waitMsgs(t, ctx, b, 10)

	consume(t, ctx, b, SpanConsumer, 10)
	waitMsgs(t, ctx, b, 10) // the signer has not had them
	consume(t, ctx, b, SignerConsumer, 4)
	waitMsgs(t, ctx, b, 6)
	consume(t, ctx, b, SignerConsumer, 6)
	waitMsgs(t, ctx, b, 0)

	signer, err := b.JS.Consumer(ctx, StreamName, SignerConsumer)
	if err != nil {
		t.Fatal(err)
	}
	span, err := b.JS.Consumer(ctx, StreamName, SpanConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if th := signer.CachedInfo().Config.InactiveThreshold; th != 0 {
		t.Errorf("the signer's consumer lapses after %v; it must never", th)
	}
	if th := span.CachedInfo().Config.InactiveThreshold; th != 7*24*time.Hour {
		t.Errorf("the span writer's consumer lapses after %v, want 7 days", th)
	}
}

// TestOpenMigratesAgeLimitedStream: a data directory from before interest
// retention (limits retention, a 7-day age, a span consumer that never
// lapses) is brought to the current definitions at start, and the records
// the signer has not had yet stay.
func TestOpenMigratesAgeLimitedStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	b := open(t, ctx, dir)
	old := b.StreamConfig()
	old.Retention, old.MaxAge = jetstream.LimitsPolicy, 7*24*time.Hour
	if _, err := b.JS.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	spanCfg := b.consumerConfig(SpanConsumer, 30*time.Second, 1000)
	spanCfg.InactiveThreshold = 0
	if _, err := b.JS.CreateConsumer(ctx, StreamName, spanCfg); err != nil {
		t.Fatal(err)
	}
	publishRecord(t, ctx, b, "old", 8)
	consume(t, ctx, b, SignerConsumer, 3) // logged; the span writer has none
	b.Close()

	b = open(t, ctx, dir)
	defer b.Close()
	s, err := b.JS.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Retention != jetstream.InterestPolicy || cfg.MaxAge != 0 {
		t.Fatalf("stream after start: retention %v, max age %v; want interest, none", cfg.Retention, cfg.MaxAge)
	}
	span, err := b.JS.Consumer(ctx, StreamName, SpanConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if th := span.CachedInfo().Config.InactiveThreshold; th == 0 {
		t.Fatal("the span writer's consumer from before still never lapses")
	}
	waitMsgs(t, ctx, b, 8) // the span writer has had none of them
	consume(t, ctx, b, SpanConsumer, 8)
	waitMsgs(t, ctx, b, 5) // the 5 the signer has not had
	consume(t, ctx, b, SignerConsumer, 5)
	waitMsgs(t, ctx, b, 0)
}
