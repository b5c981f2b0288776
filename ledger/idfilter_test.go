package ledger

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

func randomIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		ids[i] = hex.EncodeToString(b)
	}
	return ids
}

func putIDs(t *testing.T, x *index, ids []string, first uint64) {
	t.Helper()
	m := make(map[string]held, len(ids))
	for i, id := range ids {
		m[id] = held{leaf: first + uint64(i)}
	}
	if err := x.put(m, first+uint64(len(ids))); err != nil {
		t.Fatal(err)
	}
}

// TestIDFilterNeverHidesAnIndexedID: the in-memory filter in front of the
// record index answers "absent" only for ids the index does not hold —
// for ids indexed before the log opened (loaded in the background) and
// for ids put while it was being loaded — and does answer "absent" for
// most new ids (otherwise it saves nothing).
func TestIDFilterNeverHidesAnIndexedID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index")
	x, err := openIndex(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	before := randomIDs(300_000)
	for i := 0; i < len(before); i += 50_000 {
		putIDs(t, x, before[i:i+50_000], uint64(i))
	}
	if err := x.close(); err != nil {
		t.Fatal(err)
	}

	x, err = openIndex(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer x.close()
	// Ids put while the filter is loaded from the index, until it is
	// ready: each must be known to it afterwards whichever side of the
	// load's snapshot it committed on.
	var during []string
	next := uint64(len(before))
	for !x.absent.ready.Load() {
		ids := randomIDs(200)
		putIDs(t, x, ids, next)
		next += uint64(len(ids))
		during = append(during, ids...)
	}
	t.Logf("%d ids put during the load", len(during))
	if len(during) == 0 {
		t.Log("the filter was ready before any put: only the loaded ids are checked")
	}
	after := randomIDs(1000)
	putIDs(t, x, after, next)

	for _, c := range []struct {
		name string
		ids  []string
	}{
		{"indexed before the open", before},
		{"put while the filter loaded", during},
		{"put once it was ready", after},
	} {
		hidden := 0
		for _, id := range c.ids {
			if x.absent.absent(id) {
				hidden++
			}
		}
		if hidden > 0 {
			t.Errorf("%s: %d of %d ids answered absent", c.name, hidden, len(c.ids))
		}
		found, err := x.holders(c.ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != len(c.ids) {
			t.Errorf("%s: holders found %d of %d", c.name, len(found), len(c.ids))
		}
	}

	fresh := randomIDs(10_000)
	absent := 0
	for _, id := range fresh {
		if x.absent.absent(id) {
			absent++
		}
	}
	if absent < 9_500 {
		t.Errorf("%d of %d new ids answered absent, want ≥ 95%% (the filter saves nothing)", absent, len(fresh))
	}
	if found, err := x.holders(fresh); err != nil || len(found) != 0 {
		t.Errorf("holders of new ids: %d found (%v)", len(found), err)
	}
}

// TestIDFilterStopsWithTheIndex: the index closes while its filter is
// still loading (the load's read transaction would otherwise hold the
// close), and a closed index's filter answers nothing.
func TestIDFilterStopsWithTheIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index")
	x, err := openIndex(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	putIDs(t, x, randomIDs(200_000), 0)
	if err := x.close(); err != nil {
		t.Fatal(err)
	}
	x, err = openIndex(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- x.close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the index did not close while its filter was loading")
	}
	if x.absent.absent("anything") {
		t.Error("a closed index's filter still answers")
	}
}
