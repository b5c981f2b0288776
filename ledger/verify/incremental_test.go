package verify_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/transparency-dev/tessera/client"

	"github.com/proofline/proofline/ledger/verify"
)

// TestAuditorIncremental grows a real tessera log across several checks:
// each check re-derives what is new plus the recheck window, agrees with
// the signed root, and a byte flipped inside the window — in an entry
// bundle or in a hash tile — is caught by the next check even though
// nothing was appended since.
func TestAuditorIncremental(t *testing.T) {
	ctx := context.Background()
	tl := newTestLog(t)
	ff := client.FileFetcher{Root: tl.dir}
	a := verify.NewAuditor(ff, tl.v, 2)

	res, err := a.Check(ctx)
	if err != nil || res.TreeSize != 0 {
		t.Fatalf("empty log: %+v %v", res, err)
	}
	steps := []struct {
		add       int
		size      uint64
		fromEntry uint64
	}{
		// The first check with entries re-derives everything.
		{700, 700, 0},
		// Each later check starts where the previous one kept its
		// state: recheck (2) full bundles before its newest full one.
		{100, 800, 0},     // the last check had 2 full bundles: from bundle 0
		{1000, 1800, 256}, // the last check had 3: from bundle 1
		{0, 1800, 1280},   // nothing new: still the newest 2 full bundles (5, 6) and the partial one
		{66000, 67800, 1280},
		{0, 67800, 67072}, // bundles 262, 263 and the partial 264
	}
	for i, s := range steps {
		if s.add > 0 {
			tl.add(t, s.add)
		}
		res, err := a.Check(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if res.TreeSize != s.size || res.FromEntry != s.fromEntry {
			t.Fatalf("step %d: size %d from %d, want size %d from %d", i, res.TreeSize, res.FromEntry, s.size, s.fromEntry)
		}
	}
	// A full audit agrees.
	if _, _, err := verify.Audit(ctx, ff, tl.v, nil); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, path string
		want       verify.Kind
	}{
		{"entry bundle", "tile/entries/263", verify.KindRoot},
		{"hash tile", "tile/0/263", verify.KindTile},
		{"level-1 hash tile", "tile/1/001.p/8", verify.KindTile},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(tl.dir, filepath.FromSlash(c.path))
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			flipped := append([]byte(nil), orig...)
			flipped[len(flipped)-5] ^= 0x01
			if err := os.WriteFile(p, flipped, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = a.Check(ctx)
			if got := kindOf(err); got != c.want {
				t.Fatalf("check over a flipped %s: %v (kind %q), want kind %q", c.path, err, got, c.want)
			}
			t.Log(err)
			if err := os.WriteFile(p, orig, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Check(ctx); err != nil {
				t.Fatalf("check after restoring %s: %v", c.path, err)
			}
		})
	}
}
