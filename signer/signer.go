// Package signer moves call records from JetStream into the Merkle log.
//
// It is a durable pull consumer: each message is acknowledged only after
// its record is durably sequenced in the log (or found there already), so
// a crash at any point leads to redelivery, and redelivery to a duplicate
// that the log's record index absorbs, never to a lost or doubled leaf.
package signer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/internal/attest"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/metrics"
	"github.com/proofline/proofline/ledger"
	"github.com/proofline/proofline/schemas"
)

// Config tunes the signer.
type Config struct {
	// MaxBatch bounds the records appended to the log in one step.
	MaxBatch int
	// AckWait is how long JetStream waits for an ack before redelivering.
	// After a crash, records the dead process held are appended this long
	// after the restart; an append is far shorter than this.
	AckWait time.Duration
	// RetryDelay is how long a batch that failed to append waits before
	// JetStream redelivers it.
	RetryDelay time.Duration
	// Attestation, when set, is the key proofline's ingest attests its
	// records with: a message whose attestation verifies is appended
	// without decoding it again. Every other message is checked in full.
	Attestation *attest.Key
	// Metrics, when set, counts the records appended.
	Metrics *metrics.Signer
}

// Signer is the log's only writer.
type Signer struct {
	cfg    Config
	bus    *bus.Bus
	log    *ledger.Log
	logger *slog.Logger
}

// New makes a signer appending from b to l.
func New(cfg Config, b *bus.Bus, l *ledger.Log, logger *slog.Logger) *Signer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 8192
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 15 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	return &Signer{cfg: cfg, bus: b, log: l, logger: logger}
}

// Run consumes until ctx ends. Transient failures are logged and retried;
// Run returns only when ctx ends or the consumer cannot be created.
func (s *Signer) Run(ctx context.Context) error {
	cons, err := s.bus.Consumer(ctx, bus.SignerConsumer, s.cfg.AckWait, 4*s.cfg.MaxBatch)
	if err != nil {
		return err
	}
	// Messages arrive continuously into a buffer; each step takes what is
	// there, so batches grow with load and latency stays low when idle.
	ch := make(chan jetstream.Msg, 2*s.cfg.MaxBatch)
	done := make(chan struct{})
	defer close(done)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case ch <- m:
		case <-done: // not acked: redelivered to the next signer
		}
	},
		jetstream.PullMaxMessages(s.cfg.MaxBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.logger.Warn("signer consumer", "err", err)
		}),
	)
	if err != nil {
		return fmt.Errorf("signer consume: %w", err)
	}
	// Three stages: this goroutine checks batch N+2 (CPU) while the
	// committer waits for the log to sequence batch N+1 (I/O) and the acker
	// acknowledges batch N, whose records the log has. Acknowledging a full
	// batch is thousands of messages to the server: done in the committer
	// it held up the next append by tens of milliseconds. The log still
	// has one writer, and batches are appended in the order received.
	acks := make(chan []jetstream.Msg, 2)
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for msgs := range acks {
			s.ack(context.WithoutCancel(ctx), msgs)
		}
	}()
	checked := make(chan checkedBatch, 1)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		s.commitLoop(context.WithoutCancel(ctx), checked, acks)
	}()
	defer func() {
		close(checked)
		<-committed
		close(acks)
		<-acked
	}()
	// The handler only blocks while ch is full, and ch is drained below
	// until the consumer reports it has delivered everything it holds.
	for {
		select {
		case <-ctx.Done():
			s.drain(cc, ch, checked)
			return nil
		case m := <-ch:
			checked <- s.check(context.WithoutCancel(ctx), s.gather(m, ch))
		}
	}
}

// gather takes first and whatever else is already buffered, up to MaxBatch.
func (s *Signer) gather(first jetstream.Msg, ch <-chan jetstream.Msg) []jetstream.Msg {
	msgs := []jetstream.Msg{first}
	for len(msgs) < s.cfg.MaxBatch {
		select {
		case m := <-ch:
			msgs = append(msgs, m)
		default:
			return msgs
		}
	}
	return msgs
}

// drain stops pulling and appends what was already delivered to this
// process, so that a graceful stop leaves nothing waiting for AckWait to
// be redelivered. It is bounded: whatever is left after drainTimeout is
// redelivered after a restart as usual.
func (s *Signer) drain(cc jetstream.ConsumeContext, ch chan jetstream.Msg, checked chan<- checkedBatch) {
	cc.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	send := func(m jetstream.Msg) bool {
		select {
		case checked <- s.check(ctx, s.gather(m, ch)):
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case m := <-ch:
			if !send(m) {
				cc.Stop()
				return
			}
		case <-cc.Closed():
			for {
				select {
				case m := <-ch:
					if !send(m) {
						return
					}
				default:
					return
				}
			}
		case <-ctx.Done():
			cc.Stop()
			return
		}
	}
}

const drainTimeout = 10 * time.Second

// checkedBatch is a batch whose messages are all valid leaves.
type checkedBatch struct {
	entries []ledger.Entry
	msgs    []jetstream.Msg
}

// check turns messages into log entries; a message that can never be one
// is dead-lettered here and dropped from the batch.
func (s *Signer) check(ctx context.Context, msgs []jetstream.Msg) checkedBatch {
	b := checkedBatch{entries: make([]ledger.Entry, 0, len(msgs)), msgs: make([]jetstream.Msg, 0, len(msgs))}
	for _, m := range msgs {
		e, err := s.entryOf(m)
		if err != nil {
			s.poison(ctx, m, err)
			continue
		}
		b.entries = append(b.entries, e)
		b.msgs = append(b.msgs, m)
	}
	return b
}

// commitLoop appends checked batches to the log in order and passes each
// batch's messages to acks once the log has its records. While a batch is
// being sequenced, the next one, when it is already checked, is added to
// the log behind it: the log then writes without waiting between batches.
// Failed batches are negatively acknowledged and redelivered.
func (s *Signer) commitLoop(ctx context.Context, checked <-chan checkedBatch, acks chan<- []jetstream.Msg) {
	type inFlight struct {
		p       *ledger.Pending
		msgs    []jetstream.Msg
		entries []ledger.Entry
	}
	add := func(b checkedBatch) *inFlight {
		if len(b.entries) == 0 {
			return nil
		}
		p, err := s.log.Add(ctx, b.entries)
		if err != nil {
			s.failed(ctx, b.msgs, err)
			return nil
		}
		return &inFlight{p: p, msgs: b.msgs, entries: b.entries}
	}
	finish := func(f *inFlight) {
		if f == nil {
			return
		}
		res, err := f.p.Wait()
		if err != nil {
			s.failed(ctx, f.msgs, err)
			return
		}
		dups, conflicts := 0, 0
		done := f.msgs[:0:0]
		for i, r := range res {
			switch {
			case r.Conflict:
				conflicts++
				if !s.conflict(ctx, f.msgs[i], f.entries[i], r) {
					continue // not acked: redelivered, and found again
				}
			case r.Duplicate:
				dups++
			}
			done = append(done, f.msgs[i])
		}
		s.logger.DebugContext(ctx, "appended", "records", len(f.msgs), "duplicates", dups, "conflicts", conflicts)
		s.cfg.Metrics.Appended(len(f.msgs)-conflicts, dups)
		s.cfg.Metrics.Conflicts(conflicts)
		acks <- done
	}
	var prev *inFlight
	for {
		if prev == nil {
			b, ok := <-checked
			if !ok {
				return
			}
			prev = add(b)
			continue
		}
		select {
		case b, ok := <-checked:
			if !ok {
				finish(prev)
				return
			}
			next := add(b)
			finish(prev)
			prev = next
		default: // nothing to overlap with: finish now, for latency
			finish(prev)
			prev = nil
		}
	}
}

// failed hands a batch back to JetStream for redelivery.
func (s *Signer) failed(ctx context.Context, msgs []jetstream.Msg, err error) {
	s.logger.ErrorContext(ctx, "append to log failed; batch will be redelivered", "err", err, "records", len(msgs))
	for _, m := range msgs {
		_ = m.NakWithDelay(s.cfg.RetryDelay)
	}
}

// ack acknowledges messages whose records are in the log. An ack is
// fire-and-forget: if it is lost the message comes back and is recognised
// as a duplicate.
func (s *Signer) ack(ctx context.Context, msgs []jetstream.Msg) {
	failed := 0
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			failed++
		}
	}
	if failed > 0 {
		s.logger.WarnContext(ctx, "acks failed; those records will be redelivered and deduplicated", "failed", failed, "of", len(msgs))
	}
}

// entryOf checks a message is a call record in canonical form: the leaf
// must be exactly the bytes an auditor will re-derive from the record.
// A record attested by proofline's ingest was checked there already.
func (s *Signer) entryOf(m jetstream.Msg) (ledger.Entry, error) {
	data := m.Data()
	if s.cfg.Attestation != nil {
		h := m.Headers()
		if id, att := bus.RecordIDOf(h.Get(jetstream.MsgIDHeader)), h.Get(attest.Header); id != "" && att != "" && s.cfg.Attestation.Verify(id, data, att) {
			return ledger.Entry{ID: id, Data: data}, nil
		}
	}
	r, ok := schemas.IsCanonicalRecord(data)
	if !ok {
		return ledger.Entry{}, errors.New("not a call record in RFC 8785 canonical form")
	}
	id := r.RecordID
	if id == "" {
		return ledger.Entry{}, errors.New("record has no record_id")
	}
	if h := bus.RecordIDOf(m.Headers().Get(jetstream.MsgIDHeader)); h != "" && h != id {
		return ledger.Entry{}, fmt.Errorf("Nats-Msg-Id %q does not match record_id %q", h, id)
	}
	return ledger.Entry{ID: id, Data: data}, nil
}

// poison moves a message that can never be appended to the dead-letter
// stream, then terminates it so it is not redelivered.
func (s *Signer) poison(ctx context.Context, m jetstream.Msg, reason error) {
	s.logger.ErrorContext(ctx, "poison message dead-lettered", "err", reason, "subject", m.Subject())
	id := ""
	if r, ok := schemas.IsCanonicalRecord(m.Data()); ok {
		id = r.RecordID
	}
	if err := s.bus.DeadLetterRecord(ctx, bus.SignerConsumer, bus.ReasonInvalid, id, m.Data(), reason); err != nil {
		s.logger.ErrorContext(ctx, "dead-letter failed; message will be redelivered", "err", err)
		_ = m.NakWithDelay(s.cfg.RetryDelay)
		return
	}
	_ = m.Term()
}

// conflict dead-letters a record whose id the log holds with other bytes
// (or that a record appended at the same time took first), with reason
// conflict: it can never be appended, and it must not be lost silently
// either. The log keeps the holder; the record is kept for
// `proofline dlq list`. It reports whether the message may be acked.
func (s *Signer) conflict(ctx context.Context, m jetstream.Msg, e ledger.Entry, r ledger.Appended) bool {
	cause := fmt.Errorf("record id %q is held by a different record in the log", e.ID)
	attrs := []any{"record_id", e.ID}
	if !r.HolderUnknown {
		cause = fmt.Errorf("record id %q is held by a different record in the log at leaf %d", e.ID, r.Index)
		attrs = append(attrs, "holder_leaf", r.Index)
	}
	s.logger.WarnContext(ctx, "record id conflict: record dead-lettered, not appended", attrs...)
	if err := s.bus.DeadLetterRecord(ctx, bus.SignerConsumer, bus.ReasonConflict, e.ID, e.Data, cause); err != nil {
		s.logger.ErrorContext(ctx, "dead-letter failed; record will be redelivered", "record_id", e.ID, "err", err)
		_ = m.NakWithDelay(s.cfg.RetryDelay)
		return false
	}
	return true
}
