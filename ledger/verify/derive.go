package verify

import (
	"bytes"
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// derived is a tree re-derived from the entries a log serves.
type derived struct {
	root       []byte // root of all the entries
	prefixRoot []byte // root of the first prefixSize entries; nil when prefixSize is 0
	tiles      int    // hash tiles compared
	// tileErr is the first served hash tile that differs from the tree
	// the entries give, nil if none did.
	tileErr *MismatchError
}

// deriver streams a log's entries into a compact range and compares each
// hash tile with the nodes the range computes. Memory stays at one tile
// per tile level whatever the log's size.
type deriver struct {
	ctx     context.Context
	f       Fetcher
	size    uint64
	pending [][][]byte // per tile level ≥ 1: the nodes of the tile being filled
	d       derived
	err     error // first I/O error, from the range's visitor
}

// bundleAndTile is entry bundle n with hash tile 0/n: the same 256 leaves,
// once as data and once as hashes.
type bundleAndTile struct {
	entries, tile []byte
}

// derive re-derives the tree of the given size from its entries: the root,
// the root of its first prefixSize leaves, and every hash tile, compared
// with the served ones. Tile level L holds the roots of the complete
// subtrees of height 8L; tile N of a level holds its nodes [256N, 256N+256).
//
// A tile that differs is recorded, not returned at once: whether the tile
// or the entries are wrong is only known once the entries' root has been
// compared with the signed one.
func derive(ctx context.Context, f Fetcher, size, prefixSize uint64) (*derived, error) {
	dv := &deriver{ctx: ctx, f: f, size: size}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := rf.NewEmptyRange(0)
	bundles := (size + layout.EntryBundleWidth - 1) / layout.EntryBundleWidth
	n := uint64(0)
	for bt, err := range prefetch(ctx, bundles, fetchAhead, dv.fetch) {
		if err != nil {
			return nil, err
		}
		leaves, err := dv.leaves(n, bt.entries)
		if err != nil {
			return nil, err
		}
		dv.compareTile(0, n, leaves, bt.tile)
		for _, h := range leaves {
			if rng.End() == prefixSize && prefixSize > 0 {
				if dv.d.prefixRoot, err = rng.GetRootHash(nil); err != nil {
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
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		root = rfc6962.DefaultHasher.EmptyRoot()
	}
	dv.d.root = root
	if prefixSize > 0 && prefixSize == size {
		dv.d.prefixRoot = root
	}
	// The last tile of each level above 0 is partial: no 256th node
	// completes it during the walk.
	for l := uint64(1); l < uint64(len(dv.pending)); l++ {
		if nodes := dv.pending[l]; len(nodes) > 0 {
			dv.fetchAndCompare(l, (size>>(l*layout.TileHeight))/layout.TileWidth, nodes)
		}
	}
	if dv.err != nil {
		return nil, dv.err
	}
	return &dv.d, nil
}

// fetch reads entry bundle n and hash tile 0/n, which cover the same leaves.
func (dv *deriver) fetch(ctx context.Context, n uint64) (bundleAndTile, error) {
	p := layout.PartialTileSize(0, n, dv.size)
	entries, err := dv.f.ReadEntryBundle(ctx, n, p)
	if err != nil {
		return bundleAndTile{}, fmt.Errorf("fetch %s: %w", layout.EntriesPath(n, p), err)
	}
	tile, err := dv.f.ReadTile(ctx, 0, n, p)
	if err != nil {
		return bundleAndTile{}, fmt.Errorf("fetch %s: %w", layout.TilePath(0, n, p), err)
	}
	return bundleAndTile{entries, tile}, nil
}

// leaves returns the leaf hashes entry bundle n contributes to the tree.
// A bundle that cannot be parsed, or lacks entries the checkpoint counts,
// means the entries cannot give the signed root.
func (dv *deriver) leaves(n uint64, raw []byte) ([][]byte, error) {
	p := layout.PartialTileSize(0, n, dv.size)
	path := layout.EntriesPath(n, p)
	leaves, err := EntryLeaves(raw)
	if err != nil {
		return nil, mismatch(KindRoot, "%s: %v", path, err)
	}
	want := min(dv.size-n*layout.EntryBundleWidth, layout.EntryBundleWidth)
	if uint64(len(leaves)) < want {
		return nil, mismatch(KindRoot, "%s has %d entries, the checkpoint at size %d needs %d", path, len(leaves), dv.size, want)
	}
	// More entries than needed: the full bundle served for a partial one
	// the log has since completed. The rest belong to a later tree.
	return leaves[:want], nil
}

// visit receives every node the compact range completes, in order within
// each tree level, and collects those of tile levels above 0.
func (dv *deriver) visit(id compact.NodeID, hash []byte) {
	if id.Level == 0 || id.Level%layout.TileHeight != 0 || dv.err != nil {
		return
	}
	l := uint64(id.Level / layout.TileHeight)
	for uint64(len(dv.pending)) <= l {
		dv.pending = append(dv.pending, nil)
	}
	dv.pending[l] = append(dv.pending[l], hash)
	if len(dv.pending[l]) == layout.TileWidth {
		dv.fetchAndCompare(l, id.Index/layout.TileWidth, dv.pending[l])
		dv.pending[l] = nil
	}
}

func (dv *deriver) fetchAndCompare(level, n uint64, nodes [][]byte) {
	p := layout.PartialTileSize(level, n, dv.size)
	raw, err := dv.f.ReadTile(dv.ctx, level, n, p)
	if err != nil {
		dv.err = fmt.Errorf("fetch %s: %w", layout.TilePath(level, n, p), err)
		return
	}
	dv.compareTile(level, n, nodes, raw)
}

// compareTile compares served tile level/n with the nodes derived for it,
// recording the first difference.
func (dv *deriver) compareTile(level, n uint64, want [][]byte, raw []byte) {
	dv.d.tiles++
	if dv.d.tileErr != nil {
		return
	}
	path := layout.TilePath(level, n, layout.PartialTileSize(level, n, dv.size))
	var t api.HashTile
	if err := t.UnmarshalText(raw); err != nil {
		dv.d.tileErr = newMismatch(KindTile, "%s is not a hash tile: %v", path, err)
		return
	}
	// A full tile may stand in for a partial one the log has since
	// completed (tlog-tiles clients fall back to it); its extra hashes
	// belong to a later tree.
	if len(t.Nodes) < len(want) {
		dv.d.tileErr = newMismatch(KindTile, "%s has %d hashes, the tree of size %d needs %d", path, len(t.Nodes), dv.size, len(want))
		return
	}
	for i, h := range want {
		if !bytes.Equal(t.Nodes[i], h) {
			dv.d.tileErr = newMismatch(KindTile, "%s hash %d is %x, the entries give %x", path, i, t.Nodes[i], h)
			return
		}
	}
}
