package verify_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/proofline/proofline/ledger/verify"
)

// tileCount is the number of hash tiles of a tree: at each level, one per
// 256 nodes, the last one maybe partial.
func tileCount(size uint64) int {
	n := 0
	for s := size; s > 0; s >>= layout.TileHeight {
		n += int((s + layout.TileWidth - 1) / layout.TileWidth)
	}
	return n
}

func TestAuditEmptyLog(t *testing.T) {
	tl := newTestLog(t)
	res, st, err := verify.Audit(context.Background(), tl.serve(t), tl.v, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.TreeSize != 0 || res.Tiles != 0 || st.Size != 0 || !bytes.Equal(st.Root, rfc6962.DefaultHasher.EmptyRoot()) {
		t.Fatalf("empty log: %+v, state %+v", res, st)
	}
}

func TestAudit(t *testing.T) {
	ctx := context.Background()
	tl := newTestLog(t)
	f := tl.serve(t)

	cp700 := tl.add(t, 700)
	res, st700, err := verify.Audit(ctx, f, tl.v, nil)
	if err != nil {
		t.Fatalf("first audit: %v", err)
	}
	// 700 leaves: tiles 0/000, 0/001, 0/002.p/188 and 1/000.p/2.
	if res.TreeSize != 700 || res.Entries != 700 || res.Tiles != 4 || res.Previous != 0 || res.Origin != testOrigin {
		t.Fatalf("first audit: %+v", res)
	}
	if st700.Origin != testOrigin || st700.Size != 700 || !bytes.Equal(st700.Root, tl.checkpoint(t, cp700).Hash) || st700.Checkpoint != string(cp700) {
		t.Fatalf("first audit state: %+v", st700)
	}
	// tessera's file fetcher is a Fetcher too.
	if _, _, err := verify.Audit(ctx, client.FileFetcher{Root: tl.dir}, tl.v, st700); err != nil {
		t.Fatalf("audit from files: %v", err)
	}

	// Past 65536 entries the tree has a level-2 tile.
	size := uint64(70_000)
	if testing.Short() {
		size = 2_000
	}
	tl.add(t, int(size)-700)
	res, st, err := verify.Audit(ctx, f, tl.v, st700)
	if err != nil {
		t.Fatalf("second audit (consistent growth): %v", err)
	}
	if res.TreeSize != size || res.Previous != 700 || res.Tiles != tileCount(size) || st.Size != size {
		t.Fatalf("second audit: %+v (want %d tiles), state %+v", res, tileCount(size), st)
	}
	if _, _, err := verify.Audit(ctx, f, tl.v, st); err != nil {
		t.Fatalf("audit at an unchanged size: %v", err)
	}

	t.Run("fork", func(t *testing.T) {
		flip := func(b []byte, i int) []byte {
			b = bytes.Clone(b)
			b[i] ^= 1
			return b
		}
		for _, c := range []struct {
			name string
			prev verify.State
		}{
			{"previous tree was bigger", verify.State{Origin: testOrigin, Size: size + 1, Root: st.Root}},
			{"same size, another root", verify.State{Origin: testOrigin, Size: size, Root: flip(st.Root, 0)}},
			{"smaller tree, another root", verify.State{Origin: testOrigin, Size: 700, Root: flip(st700.Root, 31)}},
			{"smaller tree, another size", verify.State{Origin: testOrigin, Size: 699, Root: st700.Root}},
		} {
			t.Run(c.name, func(t *testing.T) {
				if _, _, err := verify.Audit(ctx, f, tl.v, &c.prev); kindOf(err) != verify.KindFork {
					t.Fatalf("got %v, want a fork", err)
				}
			})
		}
		other := *st
		other.Origin = "someone.else/log"
		if _, _, err := verify.Audit(ctx, f, tl.v, &other); err == nil || verify.IsMismatch(err) {
			t.Fatalf("another log's state: %v, want a usage error", err)
		}
	})

	// Alter one file at a time on disk, audit from the state at the same
	// size and from the older one (whose consistency proof is built from
	// the tiles, so an altered tile must not pass for a fork).
	full0 := layout.TilePath(0, 1, 0)
	last0 := layout.TilePath(0, (size-1)/256, layout.PartialTileSize(0, (size-1)/256, size))
	level1 := layout.TilePath(1, 0, layout.PartialTileSize(1, 0, size))
	onConsistencyPath := layout.TilePath(0, 2, 0) // holds leaf 699, the old tree's last
	tamper := []struct {
		path  string
		alter func([]byte) []byte
		want  verify.Kind
	}{
		{full0, flipAt(5 * 32), verify.KindTile},
		{last0, flipAt(-1), verify.KindTile},
		{level1, flipAt(0), verify.KindTile},
		{onConsistencyPath, flipAt(187*32 + 7), verify.KindTile},
		{full0, func(b []byte) []byte { return b[:len(b)-1] }, verify.KindTile},
		{full0, func(b []byte) []byte { return b[:32*10] }, verify.KindTile},
		{layout.EntriesPath(1, 0), flipAt(-2), verify.KindRoot},
		{layout.EntriesPath(0, 0), flipAt(0), verify.KindRoot},
		{layout.EntriesPath(0, 0), func(b []byte) []byte { return b[:len(b)-30] }, verify.KindRoot},
		{layout.CheckpointPath, flipAt(len(testOrigin) + 2), verify.KindSignature},
	}
	if size > 65536 {
		tamper = append(tamper, struct {
			path  string
			alter func([]byte) []byte
			want  verify.Kind
		}{layout.TilePath(2, 0, 1), flipAt(3), verify.KindTile})
	}
	for _, c := range tamper {
		t.Run(c.path, func(t *testing.T) {
			alterFile(t, filepath.Join(tl.dir, c.path), c.alter)
			for _, prev := range []*verify.State{st, st700} {
				if _, _, err := verify.Audit(ctx, f, tl.v, prev); kindOf(err) != c.want {
					t.Errorf("previous size %d: got %v, want a %s mismatch", prev.Size, err, c.want)
				}
			}
			if c.path == onConsistencyPath {
				// The case is meaningful only if the altered tile did
				// break the consistency proof.
				pb, err := client.NewProofBuilder(ctx, size, f.ReadTile)
				if err != nil {
					t.Fatal(err)
				}
				p, err := pb.ConsistencyProof(ctx, 700, size)
				if err == nil && proof.VerifyConsistency(rfc6962.DefaultHasher, 700, size, p, st700.Root, st.Root) == nil {
					t.Error("the altered tile is not on the consistency proof's path")
				}
			}
		})
	}
	if _, _, err := verify.Audit(ctx, f, tl.v, st700); err != nil {
		t.Fatalf("after restoring every file: %v", err)
	}
}

func TestAuditCancelled(t *testing.T) {
	tl := newTestLog(t)
	f := tl.serve(t)
	tl.add(t, 600)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := verify.Audit(ctx, f, tl.v, nil); err == nil || verify.IsMismatch(err) {
		t.Fatalf("cancelled audit: %v, want a plain error", err)
	}
}

// flipAt flips the low bit of byte i (from the end if negative).
func flipAt(i int) func([]byte) []byte {
	return func(b []byte) []byte {
		b = bytes.Clone(b)
		j := i
		if j < 0 {
			j += len(b)
		}
		b[j] ^= 1
		return b
	}
}

// alterFile rewrites a log file for the rest of the (sub)test.
func alterFile(t *testing.T, path string, alter func([]byte) []byte) {
	t.Helper()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, alter(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Error(err)
		}
	})
}
