package verify

import (
	"bytes"
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/schemas"
)

// Fetcher reads a log's public resources (C2SP tlog-tiles). tessera's
// client.HTTPFetcher and client.FileFetcher satisfy it.
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
	Entries  uint64 `json:"entries"`
	Tiles    int    `json:"tiles"`
	// Previous is the tree size of the last audited checkpoint (0: none).
	Previous uint64 `json:"previous"`
}

// Audit verifies the log's current checkpoint, re-derives the whole tree
// from the entries — every hash tile byte for byte, and the root — and
// checks that the tree extends the one seen at the previous audit (prev,
// nil for a first audit). It returns the state to remember for the next.
//
// Re-deriving everything rather than trusting the tiles is the point: a
// tile or entry altered on the server is caught even when no proof a
// client asked for happened to touch it.
func Audit(ctx context.Context, f Fetcher, v note.Verifier, prev *State) (*AuditResult, *State, error) {
	raw, err := f.ReadCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch checkpoint: %w", err)
	}
	cp, err := OpenCheckpoint(raw, v)
	if err != nil {
		return nil, nil, err
	}
	if prev != nil && prev.Origin != "" && prev.Origin != cp.Origin {
		return nil, nil, fmt.Errorf("state is for log %q, not %q", prev.Origin, cp.Origin)
	}
	if prev != nil && cp.Size < prev.Size {
		return nil, nil, mismatch(KindFork, "tree shrank from size %d to %d", prev.Size, cp.Size)
	}
	leaves, err := leafHashes(ctx, f, cp.Size)
	if err != nil {
		return nil, nil, err
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	var prevRoot []byte
	for i, h := range leaves {
		if prev != nil && prev.Size > 0 && uint64(i) == prev.Size {
			if prevRoot, err = r.GetRootHash(nil); err != nil {
				return nil, nil, err
			}
		}
		if err := r.Append(h, nil); err != nil {
			return nil, nil, err
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return nil, nil, err
	}
	if cp.Size == 0 {
		root = rfc6962.DefaultHasher.EmptyRoot()
	}
	if prev != nil && prev.Size == cp.Size {
		prevRoot = root
	}
	if !bytes.Equal(root, cp.Hash) {
		return nil, nil, mismatch(KindRoot, "the %d entries hash to %x, the signed checkpoint says %x", cp.Size, root, cp.Hash)
	}
	tiles, err := checkTiles(ctx, f, leaves, cp.Size)
	if err != nil {
		return nil, nil, err
	}
	res := &AuditResult{Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash, Entries: cp.Size, Tiles: tiles}
	if prev != nil && prev.Size > 0 {
		res.Previous = prev.Size
		// The entries are now known to be the signed tree, so its prefix
		// is the tree the previous checkpoint must have committed to.
		if !bytes.Equal(prevRoot, prev.Root) {
			return nil, nil, mismatch(KindFork, "the previously seen checkpoint at size %d had root %x; the first %d entries of this log hash to %x",
				prev.Size, prev.Root, prev.Size, prevRoot)
		}
	}
	return res, &State{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Checkpoint: string(raw)}, nil
}

// leafHashes reads every entry bundle of a tree of the given size and
// returns the RFC 6962 leaf hash of each entry.
func leafHashes(ctx context.Context, f Fetcher, size uint64) ([][]byte, error) {
	out := make([][]byte, 0, size)
	for i := uint64(0); i*layout.EntryBundleWidth < size; i++ {
		p := layout.PartialTileSize(0, i, size)
		raw, err := f.ReadEntryBundle(ctx, i, p)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", layout.EntriesPath(i, p), err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return nil, mismatch(KindRoot, "%s is not an entry bundle: %v", layout.EntriesPath(i, p), err)
		}
		want := min(size-i*layout.EntryBundleWidth, layout.EntryBundleWidth)
		if uint64(len(b.Entries)) < want {
			return nil, mismatch(KindRoot, "%s has %d entries, the checkpoint needs %d", layout.EntriesPath(i, p), len(b.Entries), want)
		}
		for _, e := range b.Entries[:want] {
			out = append(out, schemas.LeafHash(e))
		}
	}
	return out, nil
}

// checkTiles recomputes every hash tile of the tree from the leaf hashes
// and compares it with the served one. Tile level L holds the roots of the
// complete subtrees of height 8L.
func checkTiles(ctx context.Context, f Fetcher, leaves [][]byte, size uint64) (int, error) {
	checked := 0
	level := leaves
	for l := uint64(0); len(level) > 0; l++ {
		for n := uint64(0); n*layout.TileWidth < uint64(len(level)); n++ {
			p := layout.PartialTileSize(l, n, size)
			path := layout.TilePath(l, n, p)
			raw, err := f.ReadTile(ctx, l, n, p)
			if err != nil {
				return checked, fmt.Errorf("fetch %s: %w", path, err)
			}
			var t api.HashTile
			if err := t.UnmarshalText(raw); err != nil {
				return checked, mismatch(KindTile, "%s is not a hash tile: %v", path, err)
			}
			want := level[n*layout.TileWidth : min(uint64(len(level)), (n+1)*layout.TileWidth)]
			if len(t.Nodes) < len(want) {
				return checked, mismatch(KindTile, "%s has %d hashes, want %d", path, len(t.Nodes), len(want))
			}
			for i, h := range want {
				if !bytes.Equal(t.Nodes[i], h) {
					return checked, mismatch(KindTile, "%s hash %d is %x, the entries give %x", path, i, t.Nodes[i], h)
				}
			}
			checked++
		}
		// Up 8 levels: complete subtrees of the next tile level.
		for h := 0; h < layout.TileHeight && len(level) > 0; h++ {
			next := make([][]byte, len(level)/2)
			for i := range next {
				next[i] = rfc6962.DefaultHasher.HashChildren(level[2*i], level[2*i+1])
			}
			level = next
		}
	}
	return checked, nil
}
