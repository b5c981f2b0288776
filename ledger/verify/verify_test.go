package verify_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/ledger"
	"github.com/proofline/proofline/ledger/verify"
)

type testLog struct {
	dir string
	log *ledger.Log
	v   note.Verifier
	n   int
}

func newTestLog(t *testing.T) *testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "verify.test/log")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	dir := t.TempDir()
	l, err := ledger.Open(context.Background(), ledger.Config{Dir: dir, Signer: s, Verifier: v, BatchMaxAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return &testLog{dir: dir, log: l, v: v}
}

// add appends n records and waits until a checkpoint covers them.
func (tl *testLog) add(t *testing.T, n int) {
	t.Helper()
	var es []ledger.Entry
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("r-%d", tl.n)
		tl.n++
		es = append(es, ledger.Entry{ID: id, Data: []byte(fmt.Sprintf(`{"actor":{"id":"a"},"record_id":%q}`, id))})
	}
	if _, err := tl.log.Append(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cp, _, err := tl.log.Checkpoint(context.Background()); err == nil && cp.Size == uint64(tl.n) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("checkpoint did not reach %d", tl.n)
}

func (tl *testLog) fetcher(t *testing.T) verify.Fetcher {
	srv := httptest.NewServer(tl.log.TilesHandler())
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/")
	f, err := client.NewHTTPFetcher(u, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func kindOf(err error) verify.Kind {
	var m *verify.MismatchError
	if errors.As(err, &m) {
		return m.Kind
	}
	return ""
}

func TestVerifyBundle(t *testing.T) {
	tl := newTestLog(t)
	tl.add(t, 300)
	b, err := tl.log.Bundle(context.Background(), "r-257")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify.VerifyBundle(b, tl.v); err != nil {
		t.Fatalf("good bundle: %v", err)
	}
	// A bundle survives pretty-printing: the leaf is the canonical form.
	var pretty verify.Bundle
	raw, _ := json.MarshalIndent(b, "", "    ")
	if err := json.Unmarshal(raw, &pretty); err != nil {
		t.Fatal(err)
	}
	pretty.Record, _ = json.MarshalIndent(json.RawMessage(b.Record), "", "  ")
	if _, err := verify.VerifyBundle(&pretty, tl.v); err != nil {
		t.Fatalf("pretty-printed bundle: %v", err)
	}

	_, otherV, _ := note.GenerateKey(rand.Reader, "verify.test/log")
	other, _ := note.NewVerifier(otherV)
	_, foreignV, _ := note.GenerateKey(rand.Reader, "someone.else/log")
	foreign, _ := note.NewVerifier(foreignV)
	cases := []struct {
		name   string
		mutate func(b *verify.Bundle)
		v      note.Verifier
		want   verify.Kind
	}{
		{"record altered", func(b *verify.Bundle) { b.Record = []byte(`{"actor":{"id":"b"},"record_id":"r-257"}`) }, tl.v, verify.KindProof},
		{"record not json", func(b *verify.Bundle) { b.Record = []byte(`{"actor"`) }, tl.v, verify.KindLeaf},
		{"wrong index", func(b *verify.Bundle) { b.LeafIndex = 256 }, tl.v, verify.KindProof},
		{"index past size", func(b *verify.Bundle) { b.LeafIndex = 300 }, tl.v, verify.KindProof},
		{"proof altered", func(b *verify.Bundle) { b.InclusionProof[0][0] ^= 1 }, tl.v, verify.KindProof},
		{"checkpoint altered", func(b *verify.Bundle) {
			b.Checkpoint = b.Checkpoint[:len("verify.test/log\n")] + "9" + b.Checkpoint[len("verify.test/log\n")+1:]
		}, tl.v, verify.KindSignature},
		{"other key", func(b *verify.Bundle) {}, other, verify.KindSignature},
		{"other log's key", func(b *verify.Bundle) {}, foreign, verify.KindSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := tl.log.Bundle(context.Background(), "r-257")
			if err != nil {
				t.Fatal(err)
			}
			c.mutate(b)
			_, err = verify.VerifyBundle(b, c.v)
			if kindOf(err) != c.want {
				t.Fatalf("err %v, want a %s mismatch", err, c.want)
			}
		})
	}
}

func TestAudit(t *testing.T) {
	ctx := context.Background()
	tl := newTestLog(t)
	f := tl.fetcher(t)
	tl.add(t, 700)
	res, st, err := verify.Audit(ctx, f, tl.v, nil)
	if err != nil {
		t.Fatalf("first audit: %v", err)
	}
	if res.TreeSize != 700 || res.Tiles < 4 {
		t.Fatalf("audit %+v: want 700 entries and every tile (3 at level 0, 1 at level 1)", res)
	}
	tl.add(t, 70_000-700)
	res, st2, err := verify.Audit(ctx, f, tl.v, st)
	if err != nil {
		t.Fatalf("second audit (consistent growth): %v", err)
	}
	if res.Previous != 700 || st2.Size != 70_000 {
		t.Fatalf("second audit %+v, state %+v", res, st2)
	}

	forked := *st2
	forked.Root = append([]byte(nil), st2.Root...)
	forked.Root[0] ^= 1
	bigger := *st2
	bigger.Size = 80_000
	olderFork := *st
	olderFork.Root = append([]byte(nil), st.Root...)
	olderFork.Root[5] ^= 1
	for name, prev := range map[string]*verify.State{"same size other root": &forked, "shrunk": &bigger, "prefix differs": &olderFork} {
		if _, _, err := verify.Audit(ctx, f, tl.v, prev); kindOf(err) != verify.KindFork {
			t.Errorf("%s: %v, want a fork", name, err)
		}
	}

	// Tamper with files on disk, one at a time, restoring each.
	size := uint64(70_000)
	tamper := []struct {
		path string
		want verify.Kind
	}{
		{layout.TilePath(0, 3, 0), verify.KindTile},
		{layout.TilePath(1, 1, layout.PartialTileSize(1, 1, size)), verify.KindTile},
		{layout.TilePath(2, 0, layout.PartialTileSize(2, 0, size)), verify.KindTile},
		{layout.EntriesPath(100, 0), verify.KindRoot},
		{layout.CheckpointPath, verify.KindSignature},
	}
	for _, c := range tamper {
		t.Run(c.path, func(t *testing.T) {
			p := filepath.Join(tl.log.TilesDir(), c.path)
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.WriteFile(p, orig, 0o644) })
			bad := append([]byte(nil), orig...)
			bad[len(bad)-3] ^= 0x40
			if err := os.WriteFile(p, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, _, err := verify.Audit(ctx, f, tl.v, st2); kindOf(err) != c.want {
				t.Fatalf("altered %s: %v, want a %s mismatch", c.path, err, c.want)
			}
		})
	}
	if _, _, err := verify.Audit(ctx, f, tl.v, st2); err != nil {
		t.Fatalf("after restoring every file: %v", err)
	}
}

func TestStateFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "state.json")
	s, err := verify.LoadState(p)
	if err != nil || len(s) != 0 {
		t.Fatalf("missing file: %v %v", s, err)
	}
	s.Put(&verify.State{Origin: "a/log", Size: 3, Root: []byte{1, 2}})
	s.Put(&verify.State{Origin: "b/log", Size: 9, Root: []byte{3}})
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	got, err := verify.LoadState(p)
	if err != nil || got.Get("a/log").Size != 3 || got.Get("b/log").Size != 9 || got.Get("c/log") != nil {
		t.Fatalf("reloaded %+v %v", got, err)
	}
	os.WriteFile(p, []byte("{broken"), 0o600)
	if _, err := verify.LoadState(p); err == nil {
		t.Fatal("corrupt state file accepted")
	}
}
