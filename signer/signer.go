// Package signer moves call records from JetStream into the Merkle log.
//
// It is a durable pull consumer: each message (a lone record, or an
// envelope of a batch's records, see ingest/publish) is acknowledged only
// after all its records are durably sequenced in the log (or found there
// already), so a crash at any point leads to redelivery, and redelivery
// to duplicates that the log's record index absorbs, never to a lost or
// doubled leaf.
package signer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/proofline/proofline/ingest/publish"
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
	// MaxBufferedBytes bounds the message bytes pulled from JetStream and
	// not yet taken into a batch (default 64 MiB). Messages are bounded by
	// bytes, not by count: one envelope may carry thousands of records.
	MaxBufferedBytes int64
}

// Signer is the log's only writer.
type Signer struct {
	cfg    Config
	bus    *bus.Bus
	log    *ledger.Log
	logger *slog.Logger
	// buffered holds the bytes of messages handed over by the consumer
	// and not yet gathered into a batch (set by Run).
	buffered *semaphore.Weighted
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
	if cfg.MaxBufferedBytes <= 0 {
		cfg.MaxBufferedBytes = 64 << 20
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
	// What is pulled and not yet taken is bounded in bytes twice: by the
	// pull (half the budget) and, for what the handler has handed over,
	// by buffered (the other half).
	ch := make(chan queued, 2*s.cfg.MaxBatch)
	done := make(chan struct{})
	defer close(done)
	doneCtx, cancelDone := context.WithCancel(context.Background())
	defer cancelDone()
	budget := s.cfg.MaxBufferedBytes / 2
	buffered := semaphore.NewWeighted(budget)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		n := min(int64(len(m.Data())), budget)
		if buffered.Acquire(doneCtx, n) != nil {
			return // stopping; not acked: redelivered to the next signer
		}
		select {
		case ch <- queued{m: m, bytes: n, records: publish.EnvelopeRecords(m.Headers().Get(publish.HeaderEnvelope), m.Headers().Get(publish.HeaderRecords))}:
		case <-done:
			buffered.Release(n)
		}
	},
		jetstream.PullMaxBytes(int(budget)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.logger.Warn("signer consumer", "err", err)
		}),
	)
	if err != nil {
		return fmt.Errorf("signer consume: %w", err)
	}
	s.buffered = buffered
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
			cancelDone()
			s.drain(cc, ch, checked)
			return nil
		case m := <-ch:
			checked <- s.check(context.WithoutCancel(ctx), s.gather(m, ch))
		}
	}
}

// queued is a message the consumer handed over, with the bytes it holds
// of the buffer and the records it carries (by its headers).
type queued struct {
	m       jetstream.Msg
	bytes   int64
	records int
}

// gather takes first and whatever else is already buffered, until the
// batch holds MaxBatch records (an envelope is taken whole), and gives
// their bytes back to the buffer.
func (s *Signer) gather(first queued, ch <-chan queued) []jetstream.Msg {
	msgs := []jetstream.Msg{first.m}
	records, bytes := first.records, first.bytes
	defer func() { s.buffered.Release(bytes) }()
	for records < s.cfg.MaxBatch {
		select {
		case q := <-ch:
			msgs = append(msgs, q.m)
			records += q.records
			bytes += q.bytes
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
func (s *Signer) drain(cc jetstream.ConsumeContext, ch chan queued, checked chan<- checkedBatch) {
	cc.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	send := func(m queued) bool {
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

// checkedBatch is a batch of messages and the valid leaves they carry.
type checkedBatch struct {
	entries []ledger.Entry
	// from is, for each entry, the index in msgs of the message carrying it.
	from []int
	// msgs are the messages to acknowledge once their entries are in the
	// log (a message whose records were all dead-lettered has none).
	msgs []jetstream.Msg
}

// check turns messages into log entries. A message that can never be
// read is dead-lettered whole; a record of an envelope that can never be
// a leaf is dead-lettered alone, and the envelope's other records go on.
// A message whose dead letter could not be stored is handed back for
// redelivery and left out of the batch.
func (s *Signer) check(ctx context.Context, msgs []jetstream.Msg) checkedBatch {
	b := checkedBatch{entries: make([]ledger.Entry, 0, len(msgs)), from: make([]int, 0, len(msgs)), msgs: make([]jetstream.Msg, 0, len(msgs))}
	for _, m := range msgs {
		entries, bad, err := s.entriesOf(m)
		if err != nil {
			s.poison(ctx, m, err)
			continue
		}
		if !s.poisonRecords(ctx, bad) {
			_ = m.NakWithDelay(s.cfg.RetryDelay)
			continue
		}
		k := len(b.msgs)
		b.msgs = append(b.msgs, m)
		for _, e := range entries {
			b.entries = append(b.entries, e)
			b.from = append(b.from, k)
		}
	}
	return b
}

// commitLoop appends checked batches to the log in order and passes each
// batch's messages to acks once the log has their records. While a batch
// is being sequenced, the next one, when it is already checked, is added
// to the log behind it: the log then writes without waiting between
// batches. Failed batches are negatively acknowledged and redelivered.
func (s *Signer) commitLoop(ctx context.Context, checked <-chan checkedBatch, acks chan<- []jetstream.Msg) {
	type inFlight struct {
		p *ledger.Pending
		checkedBatch
	}
	add := func(b checkedBatch) *inFlight {
		if len(b.entries) == 0 {
			if len(b.msgs) > 0 { // every record dead-lettered
				acks <- b.msgs
			}
			return nil
		}
		p, err := s.log.Add(ctx, b.entries)
		if err != nil {
			s.failed(ctx, b.msgs, err)
			return nil
		}
		return &inFlight{p: p, checkedBatch: b}
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
		var retry map[int]bool // messages handed back: not acked
		for i, r := range res {
			switch {
			case r.Conflict:
				conflicts++
				if err := s.conflict(ctx, f.entries[i], r); err != nil {
					if retry == nil {
						retry = map[int]bool{}
					}
					retry[f.from[i]] = true
				}
			case r.Duplicate:
				dups++
			}
		}
		done := f.msgs
		if retry != nil {
			done = make([]jetstream.Msg, 0, len(f.msgs))
			for k, m := range f.msgs {
				if retry[k] {
					// Redelivered, and its records found again: the ones
					// appended now as duplicates, the conflict again.
					_ = m.NakWithDelay(s.cfg.RetryDelay)
					continue
				}
				done = append(done, m)
			}
		}
		s.logger.DebugContext(ctx, "appended", "records", len(f.entries), "messages", len(f.msgs), "duplicates", dups, "conflicts", conflicts)
		s.cfg.Metrics.Appended(len(f.entries)-conflicts, dups)
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
	s.logger.ErrorContext(ctx, "append to log failed; batch will be redelivered", "err", err, "messages", len(msgs))
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

// badRecord is a record of an envelope that can never be a leaf.
type badRecord struct {
	id   string
	data []byte
	err  error
}

// entriesOf checks a message's records are call records in canonical
// form: a leaf must be exactly the bytes an auditor will re-derive from
// the record. Records attested by proofline's ingest were checked there
// already. An error means the message as a whole can never be read; bad
// lists the records of an envelope that cannot be leaves.
func (s *Signer) entriesOf(m jetstream.Msg) (entries []ledger.Entry, bad []badRecord, err error) {
	h := m.Headers()
	version := h.Get(publish.HeaderEnvelope)
	if !publish.IsEnvelope(version) {
		e, err := s.entryOf(m)
		if err != nil {
			return nil, nil, err
		}
		return []ledger.Entry{e}, nil, nil
	}
	recs, err := publish.ReadEnvelope(version, h.Get(publish.HeaderRecords), m.Data())
	if err != nil {
		return nil, nil, err
	}
	entries = make([]ledger.Entry, 0, len(recs))
	if s.cfg.Attestation != nil {
		if id, att := h.Get(jetstream.MsgIDHeader), h.Get(attest.Header); id != "" && att != "" && publish.VerifyEnvelope(s.cfg.Attestation, id, att, m.Data()) {
			for _, r := range recs {
				entries = append(entries, ledger.Entry{ID: r.RecordID, Data: r.Data})
			}
			return entries, nil, nil
		}
	}
	for _, r := range recs {
		rec, ok := schemas.IsCanonicalRecord(r.Data)
		switch {
		case !ok:
			bad = append(bad, badRecord{id: r.RecordID, data: r.Data, err: errors.New("not a call record in RFC 8785 canonical form")})
		case rec.RecordID != r.RecordID:
			bad = append(bad, badRecord{id: rec.RecordID, data: r.Data, err: fmt.Errorf("envelope names record %q, the record says %q", r.RecordID, rec.RecordID)})
		default:
			entries = append(entries, ledger.Entry{ID: r.RecordID, Data: r.Data})
		}
	}
	return entries, bad, nil
}

// entryOf checks a single-record message.
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

// poison moves a message that can never be read to the dead-letter
// stream, then terminates it so it is not redelivered.
func (s *Signer) poison(ctx context.Context, m jetstream.Msg, reason error) {
	s.logger.ErrorContext(ctx, "poison message dead-lettered", "err", reason, "subject", m.Subject())
	id := ""
	if !publish.IsEnvelope(m.Headers().Get(publish.HeaderEnvelope)) {
		if r, ok := schemas.IsCanonicalRecord(m.Data()); ok {
			id = r.RecordID
		}
	}
	if err := s.bus.DeadLetterRecord(ctx, bus.SignerConsumer, bus.ReasonInvalid, id, m.Data(), reason); err != nil {
		s.logger.ErrorContext(ctx, "dead-letter failed; message will be redelivered", "err", err)
		_ = m.NakWithDelay(s.cfg.RetryDelay)
		return
	}
	_ = m.Term()
}

// poisonRecords dead-letters an envelope's records that can never be
// leaves, each on its own. It reports whether all were stored; if not,
// the envelope is redelivered and those already stored are stored again
// (a dead letter more, nothing lost).
func (s *Signer) poisonRecords(ctx context.Context, bad []badRecord) bool {
	for _, r := range bad {
		s.logger.ErrorContext(ctx, "record of an envelope dead-lettered", "err", r.err, "record_id", r.id)
		if err := s.bus.DeadLetterRecord(ctx, bus.SignerConsumer, bus.ReasonInvalid, r.id, r.data, r.err); err != nil {
			s.logger.ErrorContext(ctx, "dead-letter failed; envelope will be redelivered", "err", err)
			return false
		}
	}
	return true
}

// conflict dead-letters a record whose id the log holds with other bytes
// (or that a record appended at the same time took first), with reason
// conflict: it can never be appended, and it must not be lost silently
// either. The log keeps the holder; the record is kept for
// `proofline dlq list`. An error means the dead letter was not stored,
// and the message carrying the record must not be acked.
func (s *Signer) conflict(ctx context.Context, e ledger.Entry, r ledger.Appended) error {
	cause := fmt.Errorf("record id %q is held by a different record in the log", e.ID)
	attrs := []any{"record_id", e.ID}
	if !r.HolderUnknown {
		cause = fmt.Errorf("record id %q is held by a different record in the log at leaf %d", e.ID, r.Index)
		attrs = append(attrs, "holder_leaf", r.Index)
	}
	s.logger.WarnContext(ctx, "record id conflict: record dead-lettered, not appended", attrs...)
	if err := s.bus.DeadLetterRecord(ctx, bus.SignerConsumer, bus.ReasonConflict, e.ID, e.Data, cause); err != nil {
		s.logger.ErrorContext(ctx, "dead-letter failed; record will be redelivered", "record_id", e.ID, "err", err)
		return err
	}
	return nil
}
