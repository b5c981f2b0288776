package ecssink_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/ecssink"
	"github.com/proofline/proofline/exporters/ecssink/estest"
	"github.com/proofline/proofline/internal/testutil"
	"github.com/proofline/proofline/ledger"
)

const origin = "es.test/log"

// logWith appends n call records to a real tessera log and waits until a
// checkpoint covers them.
func logWith(t *testing.T, n int) (*ledger.Log, note.Verifier) {
	t.Helper()
	skey, vkey, _ := note.GenerateKey(rand.Reader, origin)
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	l, err := ledger.Open(context.Background(), ledger.Config{Dir: t.TempDir(), Signer: s, Verifier: v,
		BatchMaxAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	es := make([]ledger.Entry, n)
	for i := range es {
		id := fmt.Sprintf("call-%04d", i)
		es[i] = ledger.Entry{ID: id, Data: []byte(fmt.Sprintf(`{"record_id":%q,"ts_start":"2026-12-01T10:00:%02d.000000000Z","ts_end":"2026-12-01T10:00:%02d.250000000Z",`+
			`"actor":{"id":"agent-%d","type":"agent","on_behalf_of":"alice@example.com"},"tool":{"name":"search","server":"jira-mcp","version":"1.2"},`+
			`"policy":{"decision":"allow"},"outcome":{"status":"ok"},"trace":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}}`,
			id, i%60, i%60, i%3))}
	}
	if _, err := l.Append(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		cp, _, err := l.Checkpoint(context.Background())
		return err == nil && cp.Size == uint64(n)
	}, "checkpoint")
	return l, v
}

// runSink runs the real exporters runner over l with one sink named
// "elastic", keeping its state in state.
func runSink(t *testing.T, l *ledger.Log, v note.Verifier, sink exporters.Sink, state string) (stop func()) {
	t.Helper()
	st, err := exporters.OpenStateDir(state)
	if err != nil {
		t.Fatal(err)
	}
	r, err := exporters.New(exporters.Config{Source: exporters.NewFileSource(l.TilesDir(), v), State: st,
		Sinks:        []exporters.SinkSpec{{Name: "elastic", Sink: sink, BatchSize: 100, BreakerFailures: 3, BreakerOpen: 100 * time.Millisecond}},
		PollInterval: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			st.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

func newSink(t *testing.T, cfg ecssink.Config) *ecssink.Sink {
	t.Helper()
	cfg.RetryWait, cfg.ThrottleWait, cfg.Version = 10*time.Millisecond, 20*time.Millisecond, "test"
	s, err := ecssink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBulkOneDocumentPerLeafThroughFaultsAndRedelivery(t *testing.T) {
	const n = 300
	l, v := logWith(t, n)
	key := estest.EncodeAPIKey("proofline", "k3y")
	es := estest.New(estest.Options{APIKey: key})
	defer es.Close()
	poisoned := origin + ":207"
	es.Poison(poisoned)
	es.Fail(503, 429)   // cluster not ready, then a whole-request rejection
	es.ThrottleItems(7) // then a full write queue for 7 items

	state := t.TempDir()
	stop := runSink(t, l, v, newSink(t, ecssink.Config{URL: es.URL, APIKey: key}), state)
	testutil.Eventually(t, 30*time.Second, func() bool {
		c, _ := exporters.LoadCursor(state, "elastic")
		return c.Next == n
	}, "cursor at the end")
	stop()

	checkDocs := func() {
		t.Helper()
		docs := es.Docs(ecssink.DefaultIndex)
		if len(docs) != n-1 {
			t.Fatalf("%d documents, want %d (every leaf but the poisoned one)", len(docs), n-1)
		}
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s:%d", origin, i)
			raw, ok := docs[id]
			if id == poisoned {
				if ok {
					t.Fatal("the poisoned document was indexed")
				}
				continue
			}
			if !ok {
				t.Fatalf("leaf %d has no document %q", i, id)
			}
			var d struct {
				Event     struct{ ID, Kind, Action string }
				Proofline struct {
					LogOrigin string `json:"log_origin"`
					LeafIndex uint64 `json:"leaf_index"`
					TreeSize  uint64 `json:"tree_size"`
				}
			}
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			if d.Event.ID != fmt.Sprintf("call-%04d", i) || d.Event.Kind != "event" || d.Event.Action != "tools/call" ||
				d.Proofline.LeafIndex != uint64(i) || d.Proofline.LogOrigin != origin || d.Proofline.TreeSize < uint64(i+1) {
				t.Fatalf("document %s: %s", id, raw)
			}
		}
		dls, err := exporters.ReadDeadLetters(state, "elastic")
		if err != nil || len(dls) == 0 {
			t.Fatalf("dead letters %+v, %v", dls, err)
		}
		for _, dl := range dls {
			if dl.LeafIndex != 207 || !strings.Contains(dl.Reason, "400 mapper_parsing_exception") {
				t.Fatalf("dead letter %+v", dl)
			}
		}
	}
	checkDocs()

	// Only the items answered 429 were resent, in the next request.
	bulks := es.Bulks()
	i := slices.IndexFunc(bulks, func(b estest.Bulk) bool { return slices.Contains(b.Statuses, 429) })
	if i < 0 || i+1 >= len(bulks) {
		t.Fatalf("no per-item 429 answered, or nothing after it: %d bulks", len(bulks))
	}
	var throttled []string
	for j, st := range bulks[i].Statuses {
		if st == 429 {
			throttled = append(throttled, bulks[i].IDs[j])
		}
	}
	if len(throttled) != 7 || !slices.Equal(bulks[i+1].IDs, throttled) {
		t.Fatalf("429 items %v, next request %v", throttled, bulks[i+1].IDs)
	}
	if !es.SawGzip() || es.Headers()[0].Get("Authorization") != "ApiKey "+key {
		t.Fatal("requests are not gzip-compressed with the API key")
	}
	cps := es.Docs(ecssink.DefaultCheckpointIndex)
	if len(cps) == 0 {
		t.Fatal("no checkpoint document")
	}
	for id, raw := range cps {
		var d struct{ Proofline struct{ Checkpoint string } }
		_ = json.Unmarshal(raw, &d)
		if _, err := note.Open([]byte(d.Proofline.Checkpoint), note.VerifierList(v)); err != nil {
			t.Fatalf("checkpoint document %s does not verify: %v", id, err)
		}
	}

	// Redeliver everything: the runner restarts with its cursor moved back
	// to leaf 0. Every create is now a 409 that counts as delivered.
	before := es.Stats()
	if err := exporters.RequestReplay(state, "elastic", 0); err != nil {
		t.Fatal(err)
	}
	runSink(t, l, v, newSink(t, ecssink.Config{URL: es.URL, APIKey: key}), state)
	testutil.Eventually(t, 30*time.Second, func() bool {
		c, _ := exporters.LoadCursor(state, "elastic")
		return es.Stats().Conflicts-before.Conflicts >= n-1 && c.Next == n
	}, "the replay answered with conflicts and the cursor back at the end")
	if after := es.Stats(); after.Created != before.Created {
		t.Fatalf("the replay created %d documents", after.Created-before.Created)
	}
	checkDocs()
}

func TestBulkWrongCredentialsKeepTheCursor(t *testing.T) {
	tests := []struct {
		name string
		cfg  ecssink.Config
	}{
		{"wrong API key", ecssink.Config{APIKey: estest.EncodeAPIKey("proofline", "wrong")}},
		{"wrong password", ecssink.Config{Username: "proofline", Password: "wrong"}},
		{"unknown user", ecssink.Config{Username: "someone", Password: "right"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, v := logWith(t, 30)
			es := estest.New(estest.Options{APIKey: estest.EncodeAPIKey("proofline", "right"), Username: "proofline", Password: "right"})
			defer es.Close()
			tc.cfg.URL = es.URL
			state := t.TempDir()
			runSink(t, l, v, newSink(t, tc.cfg), state)
			testutil.Eventually(t, 10*time.Second, func() bool {
				st, err := exporters.LoadStatus(state, "elastic")
				return err == nil && strings.Contains(st.LastError, "fatal: sink cannot deliver: elasticsearch: HTTP 401 security_exception") && st.LagLeaves == 30
			}, "the 401 shows in the status")
			if c, _ := exporters.LoadCursor(state, "elastic"); c.Next != 0 {
				t.Fatalf("cursor moved to %d on refused credentials", c.Next)
			}
			if dls, _ := exporters.ReadDeadLetters(state, "elastic"); len(dls) != 0 {
				t.Fatalf("%d events dead-lettered for wrong credentials", len(dls))
			}
			if st := es.Stats(); st.Created != 0 {
				t.Fatalf("%d documents created with wrong credentials", st.Created)
			}
		})
	}
}
