package splunkhec_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/splunkhec"
	"github.com/proofline/proofline/exporters/splunkhec/hectest"
	"github.com/proofline/proofline/internal/testutil"
	"github.com/proofline/proofline/ledger"
)

// logWith appends n records to a real tessera log and waits until a
// checkpoint covers them.
func logWith(t *testing.T, n int) (*ledger.Log, note.Verifier) {
	t.Helper()
	skey, vkey, _ := note.GenerateKey(rand.Reader, "hec.test/log")
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
		es[i] = ledger.Entry{ID: id, Data: []byte(fmt.Sprintf(`{"record_id":%q,"ts_start":"2026-12-01T10:00:%02d.000000000Z"}`, id, i%60))}
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

func runSink(t *testing.T, l *ledger.Log, v note.Verifier, sink exporters.Sink) (state string, stop func()) {
	t.Helper()
	state = t.TempDir()
	st, err := exporters.OpenStateDir(state)
	if err != nil {
		t.Fatal(err)
	}
	r, err := exporters.New(exporters.Config{Source: exporters.NewFileSource(l.TilesDir(), v), State: st,
		Sinks:        []exporters.SinkSpec{{Name: "splunk", Sink: sink, BatchSize: 100, BreakerFailures: 3, BreakerOpen: 100 * time.Millisecond}},
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
	return state, stop
}

func TestHECDeliversEveryCallWithItsEvidenceThroughFaults(t *testing.T) {
	const n = 450
	l, v := logWith(t, n)
	hec := hectest.New("s3cret", true)
	defer hec.Close()
	hec.Poison("call-0207")
	hec.Fail(503, 429, -1, 503) // busy, throttled, an ack that never comes, busy again

	sink, err := splunkhec.New(splunkhec.Config{URL: hec.URL, Token: "s3cret", Ack: true, AckTimeout: 300 * time.Millisecond,
		AckPoll: 10 * time.Millisecond, Index: "proofline", Sourcetype: "proofline:call", Source: "proofline"})
	if err != nil {
		t.Fatal(err)
	}
	state, stop := runSink(t, l, v, sink)
	testutil.Eventually(t, 30*time.Second, func() bool {
		c, _ := exporters.LoadCursor(state, "splunk")
		return c.Next == n
	}, "cursor at the end")
	stop()

	seen := map[float64]int{}
	checkpoints := 0
	for _, ev := range hec.Indexed() {
		f := ev["fields"].(map[string]any)
		if ev["sourcetype"] == "proofline:call:checkpoint" {
			checkpoints++
			continue
		}
		if ev["index"] != "proofline" || f["log_origin"] != "hec.test/log" || f["tree_size"] == nil || f["record_id"] == nil {
			t.Fatalf("event without its evidence: %v", ev)
		}
		seen[f["leaf_index"].(float64)]++
	}
	for i := 0; i < n; i++ {
		if i == 207 {
			if seen[float64(i)] != 0 {
				t.Fatal("the poisoned event was indexed")
			}
			continue
		}
		if seen[float64(i)] == 0 {
			t.Fatalf("leaf %d never reached Splunk", i)
		}
	}
	if checkpoints == 0 {
		t.Fatal("no checkpoint event reached Splunk")
	}
	dls, err := exporters.ReadDeadLetters(state, "splunk")
	if err != nil || len(dls) != 1 || dls[0].RecordID != "call-0207" {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
}

func TestHECWrongTokenKeepsEverything(t *testing.T) {
	l, v := logWith(t, 30)
	hec := hectest.New("right", false)
	defer hec.Close()
	sink, err := splunkhec.New(splunkhec.Config{URL: hec.URL, Token: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	state, _ := runSink(t, l, v, sink)
	testutil.Eventually(t, 10*time.Second, func() bool {
		st, err := exporters.LoadStatus(state, "splunk")
		return err == nil && st.LastError != "" && st.LagLeaves == 30
	}, "the fatal error shows in the status")
	if c, _ := exporters.LoadCursor(state, "splunk"); c.Next != 0 {
		t.Fatalf("cursor moved to %d on a refused token", c.Next)
	}
	if dls, _ := exporters.ReadDeadLetters(state, "splunk"); len(dls) != 0 {
		t.Fatalf("%d events dead-lettered for a wrong token", len(dls))
	}
	if len(hec.Indexed()) != 0 {
		t.Fatal("events indexed with a wrong token")
	}
}
