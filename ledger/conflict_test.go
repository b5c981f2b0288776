package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// other is e with the same id and different bytes: someone else's record.
func other(e Entry) Entry {
	return Entry{ID: e.ID, Data: []byte(fmt.Sprintf(`{"ingested_by":"mallory","record_id":%q}`, e.ID))}
}

// TestConflictsAreNeverDuplicates: an id held by a leaf with other bytes
// is a conflict — in the index, in a pending batch, earlier in the same
// batch, after the index was rebuilt from the log, and after an upgrade
// from the bbolt index (whose entries had no leaf hashes) — and is never
// appended, while the same bytes again are still a duplicate.
func TestConflictsAreNeverDuplicates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, v := testKeys(t)
	l := openTestLog(t, dir, s, v)

	first := entries("k", 20)
	got, err := l.Append(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, a Appended, conflict bool, holder uint64) {
		t.Helper()
		if conflict {
			if !a.Conflict || a.Duplicate || a.HolderUnknown || a.Index != holder {
				t.Fatalf("%s: %+v, want a conflict with leaf %d", name, a, holder)
			}
			return
		}
		if !a.Duplicate || a.Conflict || a.Index != holder {
			t.Fatalf("%s: %+v, want a duplicate of leaf %d", name, a, holder)
		}
	}
	// Indexed: a different record under a held id, next to a retry.
	res, err := l.Append(ctx, []Entry{other(first[3]), first[4]})
	if err != nil {
		t.Fatal(err)
	}
	check("indexed", res[0], true, got[3].Index)
	check("indexed retry", res[1], false, got[4].Index)

	// In one batch, and across pending batches.
	fresh := entries("m", 3)
	p1, err := l.Add(ctx, []Entry{fresh[0], other(fresh[0]), fresh[0]})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.Add(ctx, []Entry{other(fresh[0]), fresh[0]})
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Check(ctx, []Entry{fresh[1], other(first[0]), first[1]})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c[0]; ok || !c[1].Conflict || c[1].Index != got[0].Index || !c[2].Duplicate {
		t.Fatalf("Check: %+v", c)
	}
	r1, err := p1.Wait()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := p2.Wait()
	if err != nil {
		t.Fatal(err)
	}
	check("same batch", r1[1], true, r1[0].Index)
	check("same batch retry", r1[2], false, r1[0].Index)
	check("pending batch", r2[0], true, r1[0].Index)
	check("pending batch retry", r2[1], false, r1[0].Index)
	if size, _ := l.IntegratedSize(ctx); size != 21 {
		t.Fatalf("size %d, want 21: a conflicting entry was appended", size)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Rebuilt from the log: the hashes come back with the ids.
	removeIndex(t, dir)
	l = openTestLog(t, dir, s, v)
	res, err = l.Append(ctx, []Entry{other(first[5]), first[5]})
	if err != nil {
		t.Fatal(err)
	}
	check("rebuilt", res[0], true, got[5].Index)
	check("rebuilt retry", res[1], false, got[5].Index)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// An upgrade: the index of a proofline from before the Pebble one (a
	// bbolt index.db whose entries hold leaf indices without hashes) is
	// not read; the log rebuilds its index from its entries, hashes
	// included, and removes the old file.
	removeIndex(t, dir)
	old := filepath.Join(dir, "index.db")
	db, err := bolt.Open(old, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("records"))
		if err != nil {
			return err
		}
		for i, a := range got {
			var leaf [8]byte
			binary.BigEndian.PutUint64(leaf[:], a.Index)
			if err := b.Put([]byte(first[i].ID), leaf[:]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	l = openTestLog(t, dir, s, v)
	defer l.Close(ctx)
	res, err = l.Append(ctx, []Entry{other(first[6]), first[7]})
	if err != nil {
		t.Fatal(err)
	}
	check("upgraded index", res[0], true, got[6].Index)
	check("upgraded index retry", res[1], false, got[7].Index)
	if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the old index.db is still there (%v)", err)
	}
	if size, _ := l.IntegratedSize(ctx); size != 21 {
		t.Fatalf("size %d, want 21", size)
	}
}
