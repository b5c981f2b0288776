package ledger

import (
	"bytes"
	"context"
	"fmt"
)

// conflict marks entry i as held by a different entry under its id.
func (p *Pending) conflict(i int) {
	if p.conflicts == nil {
		p.conflicts = map[int]bool{}
	}
	p.conflicts[i] = true
}

// Check tells, without appending anything, which entries carry an id the
// log already holds — indexed, or in a batch being appended — and whether
// each is the same leaf (Duplicate) or a different one (Conflict). Entries
// whose id the log does not hold are absent from the answer. Ingest uses
// it to answer a retry or a conflict at once, and to keep a conflicting
// record out of the stream.
//
// An id held by a batch not yet sequenced has no leaf index yet:
// HolderUnknown is set.
func (l *Log) Check(ctx context.Context, entries []Entry) (map[int]Appended, error) {
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	known, err := l.idx.holders(ids)
	if err != nil {
		return nil, fmt.Errorf("index lookup: %w", err)
	}
	out := make(map[int]Appended)
	var rest []int
	for i, e := range entries {
		h, ok := known[e.ID]
		if !ok {
			rest = append(rest, i)
			continue
		}
		same := h.holds(e.Data)
		out[i] = Appended{Index: h.leaf, Duplicate: same, Conflict: !same}
	}
	if len(rest) == 0 {
		return out, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, i := range rest {
		e := entries[i]
		q, ok := l.inflight[e.ID]
		if !ok {
			continue
		}
		same := bytes.Equal(q.entries[q.firstInBatch[e.ID]].Data, e.Data)
		out[i] = Appended{Duplicate: same, Conflict: !same, HolderUnknown: true}
	}
	return out, nil
}
