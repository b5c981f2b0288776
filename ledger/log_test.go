package ledger

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

func testKeys(t *testing.T) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "test.proofline/log")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func openTestLog(t *testing.T, dir string, s note.Signer, v note.Verifier) *Log {
	t.Helper()
	l, err := Open(context.Background(), Config{Dir: dir, Signer: s, Verifier: v, BatchMaxAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func entries(prefix string, n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		id := fmt.Sprintf("%s-%04d", prefix, i)
		out[i] = Entry{ID: id, Data: []byte(fmt.Sprintf(`{"record_id":%q}`, id))}
	}
	return out
}

func waitPublished(t *testing.T, l *Log, size uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cp, _, err := l.Checkpoint(context.Background()); err == nil && cp.Size >= size {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("checkpoint did not reach size %d", size)
}

func TestAppendDeduplicates(t *testing.T) {
	ctx := context.Background()
	s, v := testKeys(t)
	l := openTestLog(t, t.TempDir(), s, v)
	defer l.Close(ctx)

	batch := entries("a", 300)
	// The same id twice in one batch is one leaf.
	batch = append(batch, batch[7])
	got, err := l.Append(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	leaves := map[uint64]bool{}
	for i, a := range got[:300] {
		if a.Duplicate || leaves[a.Index] {
			t.Fatalf("entry %d: %+v, want a new distinct leaf", i, a)
		}
		leaves[a.Index] = true
	}
	if last := got[300]; !last.Duplicate || last.Index != got[7].Index {
		t.Fatalf("repeat in batch: %+v, want duplicate of leaf %d", last, got[7].Index)
	}
	again, err := l.Append(ctx, entries("a", 300))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range again {
		if !a.Duplicate || a.Index != got[i].Index {
			t.Fatalf("retry %d: %+v, want duplicate of leaf %d", i, a, got[i].Index)
		}
	}
	size, err := l.IntegratedSize(ctx)
	if err != nil || size != 300 {
		t.Fatalf("size %d (%v), want 300", size, err)
	}
	waitPublished(t, l, 300)
	b, err := l.Bundle(ctx, "a-0123")
	if err != nil {
		t.Fatal(err)
	}
	if b.LeafIndex != got[123].Index || string(b.Record) != `{"record_id":"a-0123"}` {
		t.Fatalf("bundle %d %s", b.LeafIndex, b.Record)
	}
	if _, err := l.Bundle(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
}

// Batches added while earlier ones are still pending: an id repeated
// across them is one leaf, answered as a duplicate of the first.
func TestPendingBatchesDeduplicate(t *testing.T) {
	ctx := context.Background()
	s, v := testKeys(t)
	l := openTestLog(t, t.TempDir(), s, v)
	defer l.Close(ctx)

	first := entries("p", 200)
	second := append(entries("q", 100), first[10], first[199])
	third := append(entries("r", 50), second[5], first[0])
	var pending []*Pending
	for _, b := range [][]Entry{first, second, third} {
		p, err := l.Add(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	var got [][]Appended
	for _, p := range pending {
		res, err := p.Wait()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res)
	}
	leaves := map[uint64]string{}
	for bi, res := range got {
		for i, a := range res {
			if a.Duplicate {
				continue
			}
			if prev, ok := leaves[a.Index]; ok {
				t.Fatalf("batch %d entry %d: leaf %d already holds %s", bi, i, a.Index, prev)
			}
			leaves[a.Index] = fmt.Sprint(bi, ":", i)
		}
	}
	if len(leaves) != 350 {
		t.Fatalf("%d new leaves, want 350", len(leaves))
	}
	for _, c := range []struct {
		got  Appended
		want uint64
	}{{got[1][100], got[0][10].Index}, {got[1][101], got[0][199].Index}, {got[2][50], got[1][5].Index}, {got[2][51], got[0][0].Index}} {
		if !c.got.Duplicate || c.got.Index != c.want {
			t.Errorf("repeat across batches: %+v, want duplicate of leaf %d", c.got, c.want)
		}
	}
	if size, err := l.IntegratedSize(ctx); err != nil || size != 350 {
		t.Fatalf("size %d (%v), want 350", size, err)
	}
	// Indexed now: a later batch finds them in the index.
	again, err := l.Append(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range again {
		if !a.Duplicate || a.Index != got[1][i].Index {
			t.Fatalf("retry %d: %+v, want duplicate of leaf %d", i, a, got[1][i].Index)
		}
	}
}

// TestReopenRebuildsIndex simulates a crash after tessera sequenced entries
// but before their ids were indexed: the index is lost entirely. Reopening
// must rebuild it from the log so that redelivered records stay single.
func TestReopenRebuildsIndex(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, v := testKeys(t)
	l := openTestLog(t, dir, s, v)
	first, err := l.Append(ctx, entries("b", 700))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	removeIndex(t, dir)
	l = openTestLog(t, dir, s, v)
	defer l.Close(ctx)
	for i, e := range entries("b", 700) {
		leaf, err := l.Lookup(e.ID)
		if err != nil || leaf != first[i].Index {
			t.Fatalf("%s: leaf %d (%v), want %d", e.ID, leaf, err, first[i].Index)
		}
	}
	again, err := l.Append(ctx, entries("b", 700))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range again {
		if !a.Duplicate {
			t.Fatalf("redelivered %d became a new leaf %d", i, a.Index)
		}
	}
	if size, _ := l.IntegratedSize(ctx); size != 700 {
		t.Fatalf("size %d, want 700", size)
	}
}

func TestConsistencyProofRange(t *testing.T) {
	ctx := context.Background()
	s, v := testKeys(t)
	l := openTestLog(t, t.TempDir(), s, v)
	defer l.Close(ctx)
	if _, err := l.Append(ctx, entries("c", 50)); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, l, 50)
	for _, c := range []struct{ from, to uint64 }{{0, 10}, {20, 10}, {10, 51}} {
		if _, err := l.ConsistencyProof(ctx, c.from, c.to); !errors.Is(err, ErrBadRange) {
			t.Errorf("from=%d to=%d: %v, want ErrBadRange", c.from, c.to, err)
		}
	}
	p, err := l.ConsistencyProof(ctx, 10, 0)
	if err != nil || p.To != 50 || len(p.Proof) == 0 {
		t.Fatalf("consistency 10→latest: %+v %v", p, err)
	}
}

// removeIndex deletes a closed log's record index, as lost or corrupted
// state the log must rebuild from its entries.
func removeIndex(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "index")
	if m, _ := filepath.Glob(filepath.Join(p, "MANIFEST-*")); len(m) == 0 {
		t.Fatalf("no record index at %s", p)
	}
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
}
