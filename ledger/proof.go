package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/proofline/proofline/ledger/verify"
)

// Bundle builds the self-contained proof that the record is in the log:
// the record, its leaf index, an inclusion proof and the signed checkpoint
// it proves against. It returns ErrNotFound for an unknown id and
// ErrNotPublished while no published checkpoint covers the leaf.
func (l *Log) Bundle(ctx context.Context, recordID string) (*verify.Bundle, error) {
	if err := l.IntegrityErr(); err != nil {
		return nil, err
	}
	leaf, err := l.Lookup(recordID)
	if err != nil {
		return nil, err
	}
	cp, raw, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	if leaf >= cp.Size {
		return nil, fmt.Errorf("leaf %d, checkpoint size %d: %w", leaf, cp.Size, ErrNotPublished)
	}
	pb, err := l.proofBuilder(ctx, cp.Size)
	if err != nil {
		return nil, err
	}
	proof, err := pb.InclusionProof(ctx, leaf)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof for leaf %d: %w", leaf, err)
	}
	data, err := l.ReadLeaf(ctx, leaf, cp.Size)
	if err != nil {
		return nil, err
	}
	b := &verify.Bundle{
		Record:         data,
		LeafIndex:      leaf,
		InclusionProof: proof,
		Checkpoint:     string(raw),
	}
	// A bundle is checked as its recipient will check it before it is
	// handed out (tens of microseconds): between a file being altered on
	// disk and the next audit, a failing bundle is an integrity failure
	// found early, never an answer.
	if _, err := verify.VerifyBundle(b, l.cfg.Verifier); err != nil {
		if !verify.IsMismatch(err) {
			return nil, fmt.Errorf("verify own bundle for leaf %d: %w", leaf, err)
		}
		failed := fmt.Errorf("%w: the proof bundle for leaf %d built from the stored log does not verify: %w", ErrIntegrity, leaf, err)
		l.audit.failed.CompareAndSwap(nil, &failed)
		l.cfg.Logger.Error("LOG INTEGRITY FAILURE: a proof built from the stored log does not verify", "leaf", leaf, "detail", err.Error())
		return nil, l.IntegrityErr()
	}
	return b, nil
}

// Consistency is a proof that the tree of size To extends the tree of size
// From, with the checkpoint that commits to To (or a later size).
type Consistency struct {
	From       uint64   `json:"from"`
	To         uint64   `json:"to"`
	Proof      [][]byte `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

// ConsistencyProof proves that the tree of size from is a prefix of the tree
// of size to. to = 0 means the latest published checkpoint's size.
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) (*Consistency, error) {
	cp, raw, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	if to == 0 {
		to = cp.Size
	}
	switch {
	case to > cp.Size:
		return nil, fmt.Errorf("to=%d is beyond the published size %d: %w", to, cp.Size, ErrBadRange)
	case from > to:
		return nil, fmt.Errorf("from=%d is larger than to=%d: %w", from, to, ErrBadRange)
	case from == 0:
		return nil, fmt.Errorf("from must be at least 1 (every tree is consistent with the empty one): %w", ErrBadRange)
	}
	pb, err := l.proofBuilder(ctx, to)
	if err != nil {
		return nil, err
	}
	p, err := pb.ConsistencyProof(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("consistency proof %d→%d: %w", from, to, err)
	}
	return &Consistency{From: from, To: to, Proof: p, Checkpoint: string(raw)}, nil
}

// IsRetryable reports whether err only means "not yet".
func IsRetryable(err error) bool { return errors.Is(err, ErrNotPublished) }
