package verify

import (
	"bytes"
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

// Fetcher reads a log's public resources (C2SP tlog-tiles). tessera's
// client.HTTPFetcher and client.FileFetcher satisfy it; both fall back to
// the full tile or bundle when asked for a partial one the log has since
// completed, which Audit allows for.
type Fetcher interface {
	ReadCheckpoint(ctx context.Context) ([]byte, error)
	ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error)
}

// AuditResult describes a passed audit.
type AuditResult struct {
	Origin   string `json:"origin"`
	TreeSize uint64 `json:"tree_size"`
	Root     []byte `json:"root"`
	// Entries is the number of entries re-hashed (the tree size).
	Entries uint64 `json:"entries"`
	// Tiles is the number of hash tiles compared with the re-derived tree.
	Tiles int `json:"tiles"`
	// Previous is the tree size of the previously audited checkpoint
	// that this one was proven to extend (0: first audit).
	Previous uint64 `json:"previous"`
	// Witnesses says who cosigned the checkpoint, when a witness policy
	// was checked.
	Witnesses *WitnessResult `json:"witnesses,omitempty"`
}

// Audit verifies the log's current checkpoint, checks that its tree
// extends the one seen at the previous audit (prev; nil for a first
// audit), and re-derives the whole tree from the entries: the root, and
// every hash tile byte for byte. It returns the state to keep for the next
// audit. Failed checks are *MismatchError.
//
// Re-deriving everything rather than trusting the tiles is the point: a
// tile or entry altered on the server is caught even when no proof a
// client asked for happened to touch it.
//
// A consistency proof that fails is not reported at once: it is built
// from the served tiles, so one altered tile on its path would otherwise
// pass for a fork, a far graver claim. The entries, once they are known to
// hash to the signed root, settle it: if their prefix hashes to the root
// seen before, the tile is at fault (KindTile), otherwise the log forked.
func Audit(ctx context.Context, f Fetcher, v note.Verifier, prev *State) (*AuditResult, *State, error) {
	raw, err := f.ReadCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch checkpoint: %w", err)
	}
	cp, err := OpenCheckpoint(raw, v)
	if err != nil {
		return nil, nil, err
	}
	var prevSize uint64
	if prev != nil {
		if prev.Origin != cp.Origin {
			return nil, nil, fmt.Errorf("the saved state is for log %q, not %q", prev.Origin, cp.Origin)
		}
		prevSize = prev.Size
	}
	consistencyErr, err := checkExtends(ctx, f, prev, cp.Size, cp.Hash)
	if err != nil {
		return nil, nil, err
	}

	d, err := derive(ctx, f, cp.Size, prevSize)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(d.root, cp.Hash) {
		hint := ""
		if d.tileErr != nil {
			hint = fmt.Sprintf("; first disagreement with the served tiles: %s", d.tileErr.Detail)
		}
		return nil, nil, mismatch(KindRoot, "the %d entries hash to %x, the signed checkpoint says %x%s", cp.Size, d.root, cp.Hash, hint)
	}
	if prevSize > 0 && !bytes.Equal(d.prefixRoot, prev.Root) {
		return nil, nil, mismatch(KindFork, "the previous audit saw root %x at size %d; the first %d entries of the signed tree of size %d hash to %x",
			prev.Root, prevSize, prevSize, cp.Size, d.prefixRoot)
	}
	if d.tileErr != nil {
		return nil, nil, d.tileErr
	}
	if consistencyErr != nil {
		return nil, nil, consistencyErr
	}
	res := &AuditResult{Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash, Entries: cp.Size, Tiles: d.tiles, Previous: prevSize}
	return res, &State{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Checkpoint: string(raw)}, nil
}

// checkExtends checks the new checkpoint against the previous state. Two
// signed checkpoints that cannot both be true — a smaller tree, or another
// root at the same size — are a fork at once (err). For a larger tree it
// builds a consistency proof from the served tiles and verifies it; a
// failure is returned as deferred, for Audit to weigh against the entries.
func checkExtends(ctx context.Context, f Fetcher, prev *State, size uint64, root []byte) (deferred, err error) {
	if prev == nil || prev.Size == 0 {
		return nil, nil
	}
	switch {
	case size < prev.Size:
		return nil, mismatch(KindFork, "the log's signed tree shrank from size %d (root %x) to %d (root %x)", prev.Size, prev.Root, size, root)
	case size == prev.Size:
		if !bytes.Equal(root, prev.Root) {
			return nil, mismatch(KindFork, "two signed trees of size %d: root %x at the previous audit, %x now", size, prev.Root, root)
		}
		return nil, nil
	}
	pb, err := client.NewProofBuilder(ctx, size, f.ReadTile)
	if err != nil {
		return fmt.Errorf("consistency proof %d→%d: %w", prev.Size, size, err), nil
	}
	p, err := pb.ConsistencyProof(ctx, prev.Size, size)
	if err != nil {
		return fmt.Errorf("consistency proof %d→%d from the served tiles: %w", prev.Size, size, err), nil
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, prev.Size, size, p, prev.Root, root); err != nil {
		return mismatch(KindFork, "the consistency proof from size %d (root %x) to %d (root %x) built from the served tiles does not verify: %v",
			prev.Size, prev.Root, size, root, err), nil
	}
	return nil, nil
}
