package verify

import (
	"bytes"
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

// Auditor re-derives a log again and again as it grows, doing at each
// Check only what changed since the previous one plus a window of the
// newest entries: the audit a log runs on itself. Audit (a full
// re-derivation) is what an outside auditor runs; a log that re-read its
// whole history every minute would spend its life hashing.
//
// Between checks it keeps the re-derived tree at the last few entry bundle
// boundaries (a compact range and the nodes of each unfinished hash tile,
// a few KiB each), so a check starts at the boundary Recheck full bundles
// before the newest and re-hashes every entry from there, comparing each
// hash tile over those entries — lower levels byte for byte, higher
// levels including the nodes derived earlier — and the root with the
// signed checkpoint. The first Check re-derives the whole log.
//
// An Auditor is not safe for concurrent use.
type Auditor struct {
	f       Fetcher
	v       note.Verifier
	recheck uint64
	// states are the derived tree at consecutive bundle boundaries,
	// oldest first; the first is where the next check starts.
	states []treeState
	// size and root of the last checkpoint that passed.
	size uint64
	root []byte
}

// treeState is the tree derived from the first 256·bundles leaves.
type treeState struct {
	bundles uint64
	hashes  [][]byte   // the compact range over those leaves
	pending [][][]byte // per tile level ≥ 1: nodes of the tile being filled
}

func (s treeState) clone() treeState {
	c := treeState{bundles: s.bundles, hashes: append([][]byte(nil), s.hashes...)}
	c.pending = make([][][]byte, len(s.pending))
	for i, p := range s.pending {
		c.pending[i] = append([][]byte(nil), p...)
	}
	return c
}

// NewAuditor audits the log f serves, whose checkpoints v verifies.
// recheck is how many of the newest full entry bundles (256 entries each)
// every check re-derives even when they have not changed.
func NewAuditor(f Fetcher, v note.Verifier, recheck int) *Auditor {
	return &Auditor{f: f, v: v, recheck: uint64(max(recheck, 0)), states: []treeState{{}}}
}

// CheckResult describes a passed check.
type CheckResult struct {
	TreeSize uint64
	Root     []byte
	// FromEntry is the first entry re-hashed; entries [FromEntry,
	// TreeSize) were re-derived.
	FromEntry uint64
	// Tiles is the number of hash tiles compared.
	Tiles int
}

// Check verifies the log's current checkpoint, checks that it extends the
// one the previous check passed, and re-derives the entries from the
// start boundary (see Auditor). Failed checks are *MismatchError; other
// errors are I/O. A failed check leaves the Auditor as it was, so the
// next Check looks at the same entries again.
func (a *Auditor) Check(ctx context.Context) (*CheckResult, error) {
	raw, err := a.f.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch checkpoint: %w", err)
	}
	cp, err := OpenCheckpoint(raw, a.v)
	if err != nil {
		return nil, err
	}
	switch {
	case cp.Size < a.size:
		return nil, mismatch(KindFork, "the log's signed tree shrank from size %d (root %x) to %d (root %x)", a.size, a.root, cp.Size, cp.Hash)
	case cp.Size == a.size && a.root != nil && !bytes.Equal(cp.Hash, a.root):
		return nil, mismatch(KindFork, "two signed trees of size %d: root %x at the previous check, %x now", cp.Size, a.root, cp.Hash)
	}
	start := a.states[0]
	size := cp.Size
	dv := &deriver{ctx: ctx, f: a.f, size: size}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	st := start.clone()
	rng, err := rf.NewRange(0, st.bundles*layout.EntryBundleWidth, st.hashes)
	if err != nil {
		return nil, fmt.Errorf("audit state: %w", err)
	}
	dv.pending = st.pending
	endBundle := (size + layout.EntryBundleWidth - 1) / layout.EntryBundleWidth
	fullBundles := size / layout.EntryBundleWidth
	keepFrom := uint64(0)
	if fullBundles > a.recheck {
		keepFrom = fullBundles - a.recheck
	}
	var states []treeState
	if start.bundles >= keepFrom {
		states = append(states, start)
	}
	var prefixRoot []byte
	prevSize := a.size
	n := start.bundles
	if n < endBundle {
		for bt, err := range prefetch(ctx, endBundle-n, fetchAhead, func(ctx context.Context, i uint64) (bundleAndTile, error) {
			return dv.fetch(ctx, start.bundles+i)
		}) {
			if err != nil {
				return nil, err
			}
			leaves, err := dv.leaves(n, bt.entries)
			if err != nil {
				return nil, err
			}
			dv.compareTile(0, n, leaves, bt.tile)
			for _, h := range leaves {
				if rng.End() == prevSize && prevSize > 0 && prefixRoot == nil {
					if prefixRoot, err = rng.GetRootHash(nil); err != nil {
						return nil, err
					}
				}
				if err := rng.Append(h, dv.visit); err != nil {
					return nil, err
				}
			}
			if dv.err != nil {
				return nil, dv.err
			}
			n++
			if len(leaves) == layout.EntryBundleWidth && n >= keepFrom {
				states = append(states, treeState{bundles: n, hashes: rng.Hashes(), pending: dv.pending}.clone())
			}
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		root = rfc6962.DefaultHasher.EmptyRoot()
	}
	if prevSize > 0 && prevSize == size {
		prefixRoot = root
	}
	for l := uint64(1); l < uint64(len(dv.pending)); l++ {
		if nodes := dv.pending[l]; len(nodes) > 0 {
			dv.fetchAndCompare(l, (size>>(l*layout.TileHeight))/layout.TileWidth, nodes)
		}
	}
	if dv.err != nil {
		return nil, dv.err
	}
	if !bytes.Equal(root, cp.Hash) {
		hint := ""
		if dv.d.tileErr != nil {
			hint = fmt.Sprintf("; first disagreement with the stored tiles: %s", dv.d.tileErr.Detail)
		}
		return nil, mismatch(KindRoot, "entries [%d, %d) re-hashed onto the tree before them give root %x, the signed checkpoint at size %d says %x%s",
			start.bundles*layout.EntryBundleWidth, size, root, size, cp.Hash, hint)
	}
	// The previous check's size lies at or after the start boundary, so
	// the prefix root was met on the way (or is the whole tree).
	if prevSize > 0 && prefixRoot != nil && !bytes.Equal(prefixRoot, a.root) {
		return nil, mismatch(KindFork, "the previous check saw root %x at size %d; the first %d entries of the signed tree of size %d hash to %x",
			a.root, prevSize, prevSize, size, prefixRoot)
	}
	if dv.d.tileErr != nil {
		return nil, dv.d.tileErr
	}
	if len(states) == 0 {
		states = append(states, start)
	}
	a.states, a.size, a.root = states, size, cp.Hash
	return &CheckResult{TreeSize: size, Root: cp.Hash, FromEntry: start.bundles * layout.EntryBundleWidth, Tiles: dv.d.tiles}, nil
}
