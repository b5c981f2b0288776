package verify_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/ledger/verify"
)

// newTestLogKeyed is newTestLog with a given key: a second log under the
// same key is how a fork or a rollback looks to an auditor.
func newTestLogKeyed(t *testing.T, s note.Signer, v note.Verifier) *testLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	drv, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	opts := tessera.NewAppendOptions().WithCheckpointSigner(s).WithBatching(256, 10*time.Millisecond).
		WithCheckpointInterval(100 * time.Millisecond).WithPushback(1 << 17)
	app, shutdown, reader, err := tessera.NewAppender(ctx, drv, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(ctx); cancel() })
	return &testLog{dir: dir, app: app, await: tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 10*time.Millisecond), signer: s, v: v}
}

// addOther appends n records unlike record(i)'s, and waits for them.
func addOther(t *testing.T, tl *testLog, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	futures := make([]tessera.IndexFuture, n)
	for i := range futures {
		futures[i] = tl.app.Add(ctx, tessera.NewEntry(fmt.Appendf(nil, `{"record_id":"other-%d"}`, i)))
	}
	for _, f := range futures {
		if _, _, err := tl.await.Await(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	tl.n += n
}

func TestFollowIsIncremental(t *testing.T) {
	ctx := context.Background()
	tl := newTestLog(t)
	f := tl.serve(t)
	tl.add(t, 300)
	res, st, err := verify.Follow(ctx, f, tl.v, nil, nil)
	if err != nil || res.TreeSize != 300 || res.Hashed != 300 {
		t.Fatalf("first check: %+v %v", res, err)
	}
	// Nothing new: nothing hashed.
	if res, st, err = verify.Follow(ctx, f, tl.v, nil, st); err != nil || res.Hashed != 0 || st.Size != 300 {
		t.Fatalf("unchanged log: %+v %v", res, err)
	}
	tl.add(t, 100)
	res, st, err = verify.Follow(ctx, f, tl.v, nil, st)
	if err != nil || res.TreeSize != 400 || res.Hashed != 100 || res.Previous != 300 {
		t.Fatalf("second check hashed %+v (want only the 100 new entries): %v", res, err)
	}
	// A state from verify --log (Audit) has no frontier: one full pass.
	_, ast, err := verify.Audit(ctx, f, tl.v, nil)
	if err != nil {
		t.Fatal(err)
	}
	tl.add(t, 5)
	if res, _, err := verify.Follow(ctx, f, tl.v, nil, ast); err != nil || res.Hashed != 405 {
		t.Fatalf("from an audit state: %+v %v", res, err)
	}
}

func TestFollowCatchesRollbackAndFork(t *testing.T) {
	ctx := context.Background()
	honest := newTestLog(t)
	honest.add(t, 300)
	_, seen, err := verify.Follow(ctx, honest.serve(t), honest.v, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same key, a shorter history: a rollback.
	short := newTestLogKeyed(t, honest.signer, honest.v)
	short.add(t, 100)
	// The same key, another history longer than the one seen: a fork.
	forked := newTestLogKeyed(t, honest.signer, honest.v)
	addOther(t, forked, 500)
	// The same key, another history of the same size: a fork.
	twin := newTestLogKeyed(t, honest.signer, honest.v)
	addOther(t, twin, 300)
	for _, tc := range []struct {
		name string
		log  *testLog
		want verify.Kind
	}{
		{"rollback", short, verify.KindRollback},
		{"fork, longer", forked, verify.KindFork},
		{"fork, same size", twin, verify.KindFork},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, next, err := verify.Follow(ctx, tc.log.serve(t), honest.v, nil, seen)
			if kindOf(err) != tc.want || next != nil {
				t.Fatalf("got %v (state %v), want a %s mismatch", err, next, tc.want)
			}
		})
	}
}
