package verify_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/ledger/notesig"
	"github.com/proofline/proofline/ledger/verify"
)

const testOrigin = "verify.test/log"

// testLog is a real tessera POSIX log in a temporary directory, its
// checkpoints signed through notesig as in production.
type testLog struct {
	dir    string
	app    *tessera.Appender
	await  *tessera.PublicationAwaiter
	signer note.Signer
	v      note.Verifier
	n      int // entries added
}

func newTestLog(t *testing.T) *testLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, v := newKey(t, testOrigin)
	dir := t.TempDir()
	drv, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(s).
		WithBatching(256, 10*time.Millisecond).
		WithCheckpointInterval(100 * time.Millisecond).
		// Tests add tens of thousands of entries at once.
		WithPushback(1 << 17)
	app, shutdown, reader, err := tessera.NewAppender(ctx, drv, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
	})
	return &testLog{
		dir:    dir,
		app:    app,
		await:  tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 10*time.Millisecond),
		signer: s,
		v:      v,
	}
}

// newKey makes a checkpoint signer through notesig's file-key path, and
// its verifier.
func newKey(t *testing.T, origin string) (note.Signer, note.Verifier) {
	t.Helper()
	privPEM, vkey, err := notesig.Keygen(origin)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "log.key")
	if err := os.WriteFile(keyPath, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, err := notesig.LoadSigner(origin, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// add appends n records {"record_id":"r-<index>"} (canonical JSON, as the
// ledger stores them) and waits for a checkpoint that covers them all,
// which it returns. Checkpoints are published asynchronously, at most
// every 100ms.
func (tl *testLog) add(t *testing.T, n int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	futures := make([]tessera.IndexFuture, n)
	for i := range futures {
		futures[i] = tl.app.Add(ctx, tessera.NewEntry(record(tl.n+i)))
	}
	var cp []byte
	for i, f := range futures {
		idx, raw, err := tl.await.Await(ctx, f)
		if err != nil {
			t.Fatalf("entry %d: %v", tl.n+i, err)
		}
		if idx.Index != uint64(tl.n+i) {
			t.Fatalf("entry %d got index %d", tl.n+i, idx.Index)
		}
		cp = raw
	}
	tl.n += n
	if got := tl.checkpoint(t, cp).Size; got != uint64(tl.n) {
		t.Fatalf("checkpoint size %d after adding %d entries", got, tl.n)
	}
	return cp
}

func record(i int) []byte { return fmt.Appendf(nil, `{"record_id":"r-%d"}`, i) }

func (tl *testLog) checkpoint(t *testing.T, raw []byte) *log.Checkpoint {
	t.Helper()
	cp, _, _, err := log.ParseCheckpoint(raw, testOrigin, tl.v)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// bundle builds a proof bundle the way any tlog-tiles client would, from
// the files alone: the proof from the hash tiles, the record from its
// entry bundle.
func (tl *testLog) bundle(t *testing.T, cpRaw []byte, index uint64) *verify.Bundle {
	t.Helper()
	ctx := context.Background()
	size := tl.checkpoint(t, cpRaw).Size
	ff := client.FileFetcher{Root: tl.dir}
	pb, err := client.NewProofBuilder(ctx, size, ff.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pb.InclusionProof(ctx, index)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := client.GetEntryBundle(ctx, ff.ReadEntryBundle, index/256, size)
	if err != nil {
		t.Fatal(err)
	}
	return &verify.Bundle{Record: eb.Entries[index%256], LeafIndex: index, InclusionProof: p, Checkpoint: string(cpRaw)}
}

// serve publishes the log directory over HTTP, as a static tlog-tiles
// server would, and returns tessera's HTTP fetcher for it.
func (tl *testLog) serve(t *testing.T) *client.HTTPFetcher {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(tl.dir)))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.NewHTTPFetcher(u, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func kindOf(err error) verify.Kind {
	if m, ok := errors.AsType[*verify.MismatchError](err); ok {
		return m.Kind
	}
	return ""
}
