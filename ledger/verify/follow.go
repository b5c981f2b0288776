package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

// FollowResult describes one passed check of Follow.
type FollowResult struct {
	Origin   string `json:"origin"`
	TreeSize uint64 `json:"tree_size"`
	Root     []byte `json:"root"`
	// Previous is the tree size the check started from.
	Previous uint64 `json:"previous"`
	// Hashed is the number of entries hashed by this check: only the new
	// ones when the state carried a frontier.
	Hashed    uint64         `json:"hashed"`
	Witnesses *WitnessResult `json:"witnesses,omitempty"`
}

// Follow is one step of a monitor: it verifies the log's current
// checkpoint (signature, and the witness policy's quorum when policy is
// not nil), checks that it extends the tree in prev, and re-derives its
// root from the entries. With a frontier in prev only the entries added
// since are fetched and hashed: the frontier is the previous tree, so a
// new root computed from it and the new entries that equals the signed
// one proves both that the entries are right and that the log only
// appended.
//
// A smaller tree is KindRollback, another root at the same size or a
// tree that does not extend the previous one is KindFork; prev is then
// left as it was, the evidence to keep.
func Follow(ctx context.Context, f Fetcher, v note.Verifier, policy *Policy, prev *State) (*FollowResult, *State, error) {
	raw, err := f.ReadCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch checkpoint: %w", err)
	}
	cp, err := OpenCheckpoint(raw, v)
	if err != nil {
		return nil, nil, err
	}
	var wr *WitnessResult
	if policy != nil {
		if wr, err = CheckWitnesses(raw, policy); err != nil {
			return nil, nil, err
		}
	}
	res := &FollowResult{Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash, Witnesses: wr}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := rf.NewEmptyRange(0)
	var prevSize uint64
	if prev != nil {
		if prev.Origin != cp.Origin {
			return nil, nil, fmt.Errorf("the saved state is for log %q, not %q", prev.Origin, cp.Origin)
		}
		prevSize = prev.Size
		res.Previous = prevSize
		switch {
		case cp.Size < prev.Size:
			return nil, nil, mismatch(KindRollback, "the log's signed tree shrank from size %d (root %x) to %d (root %x)", prev.Size, prev.Root, cp.Size, cp.Hash)
		case cp.Size == prev.Size && !bytes.Equal(cp.Hash, prev.Root):
			return nil, nil, mismatch(KindFork, "two signed trees of size %d: root %x before, %x now", cp.Size, prev.Root, cp.Hash)
		case cp.Size == prev.Size:
			next := *prev
			next.Checkpoint = string(raw)
			return res, &next, nil
		}
		if prev.Size > 0 && len(prev.Frontier) > 0 {
			r, err := rf.NewRange(0, prev.Size, prev.Frontier)
			if err != nil {
				return nil, nil, fmt.Errorf("state of %s: frontier: %w", prev.Origin, err)
			}
			if root, err := r.GetRootHash(nil); err != nil || !bytes.Equal(root, prev.Root) {
				return nil, nil, fmt.Errorf("state of %s: the frontier does not give the saved root", prev.Origin)
			}
			rng = r
		}
	}
	from := rng.End()
	var prefixRoot []byte
	bundles := uint64(0)
	first := from / layout.EntryBundleWidth
	if cp.Size > from {
		bundles = (cp.Size+layout.EntryBundleWidth-1)/layout.EntryBundleWidth - first
	}
	fetch := func(ctx context.Context, i uint64) ([]byte, error) {
		n := first + i
		b, err := f.ReadEntryBundle(ctx, n, layout.PartialTileSize(0, n, cp.Size))
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", layout.EntriesPath(n, layout.PartialTileSize(0, n, cp.Size)), err)
		}
		return b, nil
	}
	i := uint64(0)
	for b, err := range prefetch(ctx, bundles, fetchAhead, fetch) {
		if err != nil {
			return nil, nil, err
		}
		n := first + i
		i++
		leaves, err := EntryLeaves(b)
		if err != nil {
			return nil, nil, mismatch(KindRoot, "%s: %v", layout.EntriesPath(n, layout.PartialTileSize(0, n, cp.Size)), err)
		}
		start := n * layout.EntryBundleWidth
		end := min(cp.Size, start+layout.EntryBundleWidth)
		if uint64(len(leaves)) < end-start {
			return nil, nil, mismatch(KindRoot, "entry bundle %d has %d entries, the checkpoint at size %d needs %d", n, len(leaves), cp.Size, end-start)
		}
		for j := max(start, from); j < end; j++ {
			if rng.End() == prevSize && prevSize > 0 && prefixRoot == nil {
				if prefixRoot, err = rng.GetRootHash(nil); err != nil {
					return nil, nil, err
				}
			}
			if err := rng.Append(leaves[j-start], nil); err != nil {
				return nil, nil, err
			}
			res.Hashed++
		}
	}
	root := rfc6962.DefaultHasher.EmptyRoot()
	if cp.Size > 0 {
		if root, err = rng.GetRootHash(nil); err != nil {
			return nil, nil, err
		}
	}
	if !bytes.Equal(root, cp.Hash) {
		if prev != nil && prevSize > 0 {
			// Told apart as Audit does: a consistency proof that verifies
			// clears the log of forking, leaving the entries at fault.
			deferred, err := checkExtends(ctx, f, prev, cp.Size, cp.Hash)
			var mm *MismatchError
			if err == nil && errors.As(deferred, &mm) && mm.Kind == KindFork {
				return nil, nil, fmt.Errorf("%w (and the entries from size %d do not hash to the new root)", deferred, from)
			}
		}
		return nil, nil, mismatch(KindRoot, "the entries hash to %x, the signed checkpoint at size %d says %x", root, cp.Size, cp.Hash)
	}
	if prefixRoot != nil && !bytes.Equal(prefixRoot, prev.Root) {
		return nil, nil, mismatch(KindFork, "the previous check saw root %x at size %d; the first %d entries of the signed tree of size %d hash to %x",
			prev.Root, prevSize, prevSize, cp.Size, prefixRoot)
	}
	return res, &State{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Checkpoint: string(raw), Frontier: rng.Hashes()}, nil
}
