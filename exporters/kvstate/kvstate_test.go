package kvstate_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/kvstate"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/testutil"
	"github.com/proofline/proofline/ledger"
)

// jetStream is a real JetStream: proofline's embedded nats-server.
func jetStream(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func open(t *testing.T, b *bus.Bus, holder string) *kvstate.State {
	t.Helper()
	s, err := kvstate.Open(context.Background(), b.JS, kvstate.Config{Lease: 300 * time.Millisecond, Holder: holder})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLeaseHandover: one runner at a time holds a sink. A second waits
// while the first renews; takes over at once when the first releases, and
// within the lease when the first dies without releasing; and a runner
// that lost the sink cannot move the cursor any more.
func TestLeaseHandover(t *testing.T) {
	ctx := context.Background()
	b := jetStream(t)
	a, other := open(t, b, "a"), open(t, b, "b")

	_, releaseA, err := a.Hold(ctx, "siem")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SaveCursor("siem", exporters.Cursor{Next: 10}); err != nil {
		t.Fatal(err)
	}
	type held struct {
		ctx     context.Context
		release func()
	}
	gotB := make(chan held, 1)
	bCtx, crashB := context.WithCancel(ctx)
	go func() {
		hctx, release, err := other.Hold(bCtx, "siem")
		if err == nil {
			gotB <- held{hctx, release}
		}
	}()
	select {
	case <-gotB:
		t.Fatal("b took the sink while a held and renewed it")
	case <-time.After(1 * time.Second): // over three leases
	}
	releaseA()
	var hb held
	select {
	case hb = <-gotB:
	case <-time.After(2 * time.Second):
		t.Fatal("b did not take the sink a released")
	}
	if c, err := other.LoadCursor("siem"); err != nil || c.Next != 10 {
		t.Fatalf("b reads cursor %+v, %v; want a's 10", c, err)
	}
	if err := a.SaveCursor("siem", exporters.Cursor{Next: 20}); !errors.Is(err, exporters.ErrLeaseLost) {
		t.Fatalf("a moved the cursor after giving the sink up: %v", err)
	}
	if err := other.SaveCursor("siem", exporters.Cursor{Next: 30}); err != nil {
		t.Fatal(err)
	}

	// b dies without releasing: a takes over once the lease runs out.
	crashB()
	start := time.Now()
	aCtx, releaseA, err := a.Hold(ctx, "siem")
	if err != nil {
		t.Fatal(err)
	}
	defer releaseA()
	t.Logf("a took over %v after b died (lease 300ms)", time.Since(start))
	if c, _ := a.LoadCursor("siem"); c.Next != 30 {
		t.Fatalf("a reads cursor %+v, want b's 30", c)
	}
	if err := other.SaveCursor("siem", exporters.Cursor{Next: 40}); !errors.Is(err, exporters.ErrLeaseLost) {
		t.Fatalf("b moved the cursor after a took the sink over: %v", err)
	}
	if hb.ctx.Err() == nil {
		t.Fatal("b's hold context is still live after it lost the sink")
	}
	if aCtx.Err() != nil {
		t.Fatal("a's hold ended")
	}
	hb.release() // a no-op for the cursor: the sink is a's
	if c, _ := a.LoadCursor("siem"); c.Next != 30 {
		t.Fatalf("b's late release changed a's cursor: %+v", c)
	}
	if err := a.SaveCursor("siem", exporters.Cursor{Next: 50}); err != nil {
		t.Fatalf("a's cursor after b's late release: %v", err)
	}
}

// TestStateKeepsWhatTheRunnerNeeds: statuses, dead letters (in leaf
// order), replay requests (taken once) and the trusted checkpoint survive
// in the bucket for any runner or reader.
func TestStateKeepsWhatTheRunnerNeeds(t *testing.T) {
	b := jetStream(t)
	s, reader := open(t, b, "a"), open(t, b, "reader")
	if err := s.SaveStatus(exporters.Status{Sink: "siem", Cursor: 7, Breaker: "open"}); err != nil {
		t.Fatal(err)
	}
	if st, err := reader.LoadStatus("siem"); err != nil || st.Cursor != 7 || st.Breaker != "open" {
		t.Fatalf("status %+v %v", st, err)
	}
	if err := s.AppendDeadLetters("siem", []exporters.DeadLetter{{Sink: "siem", LeafIndex: 12, Reason: "x"}, {Sink: "siem", LeafIndex: 3, Reason: "y"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendDeadLetters("other", []exporters.DeadLetter{{Sink: "other", LeafIndex: 5}}); err != nil {
		t.Fatal(err)
	}
	dls, err := reader.DeadLetters("siem")
	if err != nil || len(dls) != 2 || dls[0].LeafIndex != 3 || dls[1].LeafIndex != 12 || dls[1].Reason != "x" {
		t.Fatalf("dead letters %+v %v", dls, err)
	}
	if _, ok, _ := s.TakeReplay("siem"); ok {
		t.Fatal("a replay nobody asked for")
	}
	if err := reader.RequestReplay("siem", 100); err != nil {
		t.Fatal(err)
	}
	if from, ok, err := s.TakeReplay("siem"); err != nil || !ok || from != 100 {
		t.Fatalf("replay %d %v %v", from, ok, err)
	}
	if _, ok, _ := s.TakeReplay("siem"); ok {
		t.Fatal("a replay request taken twice")
	}
	if n, _ := reader.LoadTrusted(); n != nil {
		t.Fatalf("trusted before any: %q", n)
	}
	if err := s.SaveTrusted([]byte("origin\n12\nroot\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := reader.LoadTrusted(); err != nil || string(n) != "origin\n12\nroot\n" {
		t.Fatalf("trusted %q %v", n, err)
	}
}

// countSink counts what one runner delivered and notes when two runners
// deliver to the sink at once.
type countSink struct {
	mu       *sync.Mutex
	inFlight *int
	overlap  *bool
	got      map[uint64]int
	// pauseAt: once this many leaves are delivered, Send waits for the
	// runner to stop (so the test knows where it stopped).
	pauseAt int
}

func (s *countSink) Send(ctx context.Context, b exporters.Batch) error {
	s.mu.Lock()
	if s.pauseAt > 0 && len(s.got) >= s.pauseAt {
		s.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	*s.inFlight++
	if *s.inFlight > 1 {
		*s.overlap = true
	}
	s.mu.Unlock()
	time.Sleep(time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.inFlight--
	for _, e := range b.Events {
		s.got[e.Evidence.LeafIndex]++
	}
	return nil
}

func (s *countSink) Close(context.Context) error { return nil }

// TestTwoRunnersOneSink: two exporter runners on different "hosts" share
// one bucket: only one delivers at a time, and when it stops the other
// takes the sink over and delivers the rest from the cursor, so every leaf
// of the log arrives.
func TestTwoRunnersOneSink(t *testing.T) {
	ctx := context.Background()
	b := jetStream(t)
	skey, vkey, err := note.GenerateKey(rand.Reader, "kvstate.test/log")
	if err != nil {
		t.Fatal(err)
	}
	sg, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	l, err := ledger.Open(ctx, ledger.Config{Dir: t.TempDir(), Signer: sg, Verifier: v, BatchMaxAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	const n = 3000
	es := make([]ledger.Entry, n)
	for i := range es {
		id := fmt.Sprintf("r-%05d", i)
		es[i] = ledger.Entry{ID: id, Data: []byte(fmt.Sprintf(`{"record_id":%q}`, id))}
	}
	if _, err := l.Append(ctx, es); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var inFlight int
	var overlap bool
	start := func(holder string, pauseAt int) (*countSink, context.CancelFunc, chan error) {
		sink := &countSink{mu: &mu, inFlight: &inFlight, overlap: &overlap, got: map[uint64]int{}, pauseAt: pauseAt}
		r, err := exporters.New(exporters.Config{Source: exporters.NewFileSource(l.TilesDir(), v), State: open(t, b, holder),
			Sinks: []exporters.SinkSpec{{Name: "siem", Sink: sink, BatchSize: 50}}, PollInterval: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		return sink, cancel, done
	}
	count := func(s *countSink) int {
		mu.Lock()
		defer mu.Unlock()
		return len(s.got)
	}
	first, stopFirst, firstDone := start("host-1", n/3)
	testutil.Eventually(t, 20*time.Second, func() bool { return count(first) > 0 }, "the first runner delivers")
	second, stopSecond, secondDone := start("host-2", 0)
	defer func() { stopSecond(); <-secondDone }()
	testutil.Eventually(t, 20*time.Second, func() bool { return count(first) >= n/3 }, "the first runner delivers a third")
	time.Sleep(time.Second) // over three leases: the first still holds the sink, paused in Send
	if c := count(second); c != 0 {
		t.Fatalf("the second runner delivered %d leaves while the first held the sink", c)
	}
	stopFirst()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := uint64(0); i < n; i++ {
			if first.got[i]+second.got[i] == 0 {
				return false
			}
		}
		return true
	}, "every leaf delivered by one runner or the other")
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Fatal("both runners delivered at the same time")
	}
	if len(second.got) == 0 || len(second.got) == n {
		t.Fatalf("the second runner delivered %d of %d: it should have taken over part-way", len(second.got), n)
	}
}
