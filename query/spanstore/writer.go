package spanstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/schemas"
)

// WriterConsumer is the durable consumer the span writer reads from.
const WriterConsumer = bus.SpanConsumer

// Evidence finds where records are in the Merkle log: the leaf index of
// each id already sequenced. In one process it is the log's own index.
type Evidence interface {
	LookupMany(ids []string) (map[string]uint64, error)
	Origin() string
}

// WriterConfig tunes the writer.
type WriterConfig struct {
	// MaxBatch and MaxWait bound a ClickHouse insert: large inserts are
	// what ClickHouse wants, and MaxWait bounds how stale a span can be.
	MaxBatch int
	MaxWait  time.Duration
	// AckWait is JetStream's redelivery timeout for unacked messages.
	AckWait time.Duration
	// NotYetDelay is how long a record not yet in the log waits before it
	// is offered again.
	NotYetDelay time.Duration
}

// Validate checks the settings; zero values take defaults.
func (c WriterConfig) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"MaxWait", c.MaxWait}, {"AckWait", c.AckWait}, {"NotYetDelay", c.NotYetDelay}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s: %v is negative", f.name, f.d))
		}
	}
	if c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("MaxBatch: %d is negative", c.MaxBatch))
	}
	return errors.Join(errs...)
}

// Writer moves call records from JetStream into the spans table.
type Writer struct {
	cfg   WriterConfig
	bus   *bus.Bus
	store *Store
	ev    Evidence
	log   *slog.Logger
	// failing is the error of the last attempt to store a batch while
	// it is being retried; nil once a batch is stored (Err).
	failing atomic.Pointer[error]
}

// Err is why the writer cannot store spans right now (ClickHouse down,
// ...), or nil when its last batch was stored. The span writer retries
// on its own; readiness reports this meanwhile.
func (w *Writer) Err() error {
	if p := w.failing.Load(); p != nil {
		return *p
	}
	return nil
}

// NewWriter makes a writer; Run starts it.
func NewWriter(cfg WriterConfig, b *bus.Bus, st *Store, ev Evidence, logger *slog.Logger) *Writer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 5000
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Second
	}
	if cfg.AckWait <= 0 {
		// An insert of a full batch takes well under a second; after a
		// crash, what the dead process held comes back after this long.
		cfg.AckWait = 10 * time.Second
	}
	if cfg.NotYetDelay <= 0 {
		cfg.NotYetDelay = 250 * time.Millisecond
	}
	return &Writer{cfg: cfg, bus: b, store: st, ev: ev, log: logger}
}

// Run consumes until ctx ends. A failed insert is retried with back-off
// while its messages stay unacknowledged: nothing is lost and nothing is
// acknowledged before ClickHouse has it.
func (w *Writer) Run(ctx context.Context) error {
	cons, err := w.consumer(ctx)
	if err != nil {
		return err
	}
	// A transient failure (ClickHouse unreachable, overloaded) is retried
	// with the whole batch after a growing pause; records ClickHouse
	// refuses are set apart by the store and dead-lettered, so they are
	// never retried.
	bo := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 30 * time.Second}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(w.cfg.MaxBatch, jetstream.FetchMaxWait(w.cfg.MaxWait))
		if err != nil {
			w.log.WarnContext(ctx, "span writer fetch", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			continue
		}
		// A batch in hand is finished even when ctx ends meanwhile.
		if retry, err := w.write(context.WithoutCancel(ctx), msgs); err != nil {
			w.failing.Store(&err)
			pause := bo.NextBackOff()
			w.log.ErrorContext(ctx, "span insert failed; retrying", "err", err, "spans", len(retry), "backoff", pause)
			for _, m := range retry {
				_ = m.NakWithDelay(pause)
			}
			sleep(ctx, pause)
			continue
		}
		w.failing.Store(nil)
		bo.Reset()
	}
	return nil
}

// Subscribe makes the writer's durable consumer exist, without reading.
// Call it at start even when ClickHouse is not reachable yet: under the
// stream's interest retention a record no consumer wants is dropped once
// the signer has it, and the spans of records accepted meanwhile would
// never be written.
func (w *Writer) Subscribe(ctx context.Context) error {
	_, err := w.consumer(ctx)
	return err
}

func (w *Writer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	return w.bus.Consumer(ctx, WriterConsumer, w.cfg.AckWait, 4*w.cfg.MaxBatch)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// write inserts the records already in the log and acks them; records not
// yet sequenced are offered again shortly, so every row gets its evidence
// pointer. On error it returns the messages still to be retried.
func (w *Writer) write(ctx context.Context, msgs []jetstream.Msg) ([]jetstream.Msg, error) {
	recs := make([]*schemas.CallRecord, 0, len(msgs))
	kept := make([]jetstream.Msg, 0, len(msgs))
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		r, ok := schemas.IsCanonicalRecord(m.Data())
		if !ok {
			if err := w.bus.DeadLetter(ctx, WriterConsumer, m.Data(), fmt.Errorf("not a canonical call record")); err != nil {
				_ = m.NakWithDelay(time.Second)
				continue
			}
			_ = m.Term()
			continue
		}
		recs, kept, ids = append(recs, r), append(kept, m), append(ids, r.RecordID)
	}
	leaves, err := w.ev.LookupMany(ids)
	if err != nil {
		return kept, fmt.Errorf("evidence lookup: %w", err)
	}
	spans := make([]Span, 0, len(recs))
	var ready []jetstream.Msg
	for i, r := range recs {
		leaf, ok := leaves[r.RecordID]
		if !ok {
			_ = kept[i].NakWithDelay(w.cfg.NotYetDelay)
			continue
		}
		sp := Span{Record: r, LogOrigin: w.ev.Origin(), LeafIndex: leaf}
		if md, err := kept[i].Metadata(); err != nil || md.NumDelivered > 1 {
			sp.MaybeStored = true
		}
		spans = append(spans, sp)
		ready = append(ready, kept[i])
	}
	rejected, err := w.store.Write(ctx, spans)
	if err != nil {
		return ready, err
	}
	w.log.DebugContext(ctx, "spans written", "spans", len(spans), "rejected", len(rejected), "not_yet_in_log", len(recs)-len(spans))
	// A span ClickHouse refuses goes to the dead letters with
	// ClickHouse's reason; the record stays in the log regardless.
	dead := map[string]bool{}
	for _, r := range rejected {
		dead[r.Span.Record.RecordID] = true
	}
	for i, m := range ready {
		id := spans[i].Record.RecordID
		if !dead[id] {
			_ = m.Ack()
			continue
		}
		if err := w.bus.DeadLetter(ctx, WriterConsumer, m.Data(), rejectionReason(rejected, id)); err != nil {
			w.log.ErrorContext(ctx, "dead-letter a rejected span", "record_id", id, "err", err)
			_ = m.NakWithDelay(time.Second)
			continue
		}
		_ = m.Term()
	}
	return nil, nil
}

// rejectionReason is ClickHouse's error for id, fit for a NATS header:
// one line, bounded.
func rejectionReason(rs []Rejection, id string) error {
	for _, r := range rs {
		if r.Span.Record.RecordID == id {
			msg := strings.Join(strings.Fields(r.Err.Error()), " ")
			if len(msg) > 2000 {
				msg = msg[:2000] + "…"
			}
			return errors.New(msg)
		}
	}
	return ErrRejected
}
