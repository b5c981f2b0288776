package spanstore

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"github.com/proofline/proofline/schemas"
)

// Leaf is one entry of the Merkle log: a call record's canonical bytes and
// where the log holds them.
type Leaf struct {
	Origin string
	Index  uint64
	Record []byte
}

// LogSink stores leaves of the log as spans. It is the span store's side
// of the exporters runner, which follows the log from a durable cursor and
// hands it the leaves in order (cmd/proofline adapts it to
// exporters.Sink): every row gets its evidence pointer from the leaf it
// came from, and the span store needs neither the stream nor the log's
// record index.
//
// Not safe for concurrent use: the runner sends one batch at a time.
type LogSink struct {
	store *Store
	// resend: the previous Write failed, and ClickHouse may hold part of
	// the batch coming again (an insert that failed after some blocks).
	resend bool
	// failing is the error of the last Write while batches are retried;
	// nil once one is stored (Err).
	failing atomic.Pointer[error]
}

// NewLogSink makes a sink writing into st.
func NewLogSink(st *Store) *LogSink { return &LogSink{store: st} }

// Err is why spans cannot be stored right now (ClickHouse down, ...), or
// nil when the last batch was stored; readiness reports it.
func (s *LogSink) Err() error {
	if p := s.failing.Load(); p != nil {
		return *p
	}
	return nil
}

// Write stores the leaves' spans. It returns the leaves that can never be
// stored (by index into leaves, with the reason: ClickHouse refused the
// row, or the leaf is not a call record); every other leaf is stored when
// the error is nil. An error means nothing can be said about the batch:
// send all of it again, which stores nothing twice (Store.Write looks up
// leaves that may be there: those at or below the highest leaf stored
// before, and all of a batch sent again after an error).
func (s *LogSink) Write(ctx context.Context, leaves []Leaf) (map[int]error, error) {
	rejected := map[int]error{}
	spans := make([]Span, 0, len(leaves))
	at := make(map[string]int, len(leaves))
	for i, l := range leaves {
		r, ok := schemas.IsCanonicalRecord(l.Record)
		if !ok {
			rejected[i] = errors.New("not a canonical call record")
			continue
		}
		at[r.RecordID] = i
		spans = append(spans, Span{Record: r, LogOrigin: l.Origin, LeafIndex: l.Index, MaybeStored: s.resend})
	}
	refused, err := s.store.Write(ctx, spans)
	if err != nil {
		s.resend = true
		s.failing.Store(&err)
		return nil, err
	}
	s.resend = false
	s.failing.Store(nil)
	for _, r := range refused {
		rejected[at[r.Span.Record.RecordID]] = oneLine(r.Err)
	}
	return rejected, nil
}

// oneLine is ClickHouse's error fit for a header or a dead-letter line:
// one line, bounded.
func oneLine(err error) error {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > 2000 {
		msg = msg[:2000] + "…"
	}
	return errors.New(msg)
}
