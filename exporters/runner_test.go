package exporters_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/filter"
	"github.com/proofline/proofline/internal/testutil"
	"github.com/proofline/proofline/ledger"
)

// A real tessera log on disk, written through the ledger as the signer
// writes it; the exporters read it back over C2SP tlog-tiles from files.
type testLog struct {
	dir string
	log *ledger.Log
	s   note.Signer
	v   note.Verifier
}

func newKeys(t *testing.T) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "exporters.test/log")
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

func openLog(t *testing.T, dir string, s note.Signer, v note.Verifier) *testLog {
	t.Helper()
	l, err := ledger.Open(context.Background(), ledger.Config{Dir: dir, Signer: s, Verifier: v,
		BatchMaxAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return &testLog{dir: dir, log: l, s: s, v: v}
}

// appendRecords appends n records; record i gets a region and data class
// from the given functions (empty: none).
func (l *testLog) appendRecords(t *testing.T, prefix string, n int, region, class func(int) string) {
	t.Helper()
	es := make([]ledger.Entry, n)
	for i := range es {
		id := fmt.Sprintf("%s-%05d", prefix, i)
		extra := ""
		if region != nil && region(i) != "" {
			extra += fmt.Sprintf(`,"region":%q`, region(i))
		}
		if class != nil && class(i) != "" {
			extra += fmt.Sprintf(`,"data_class":%q`, class(i))
		}
		es[i] = ledger.Entry{ID: id, Data: []byte(fmt.Sprintf(`{"record_id":%q%s}`, id, extra))}
	}
	if _, err := l.log.Append(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	size, err := l.log.IntegratedSize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		cp, _, err := l.log.Checkpoint(context.Background())
		return err == nil && cp.Size >= size
	}, "checkpoint covers the appended records")
}

// faultSink is a sink whose failures the test scripts: it implements the
// Sink contract (acknowledge, reject some, throttle, fail) and remembers
// every event it acknowledged and every anchor it was given.
type faultSink struct {
	mu        sync.Mutex
	got       []exporters.Event
	anchors   []*exporters.Anchor
	sends     int
	poisoned  map[string]bool // record ids refused for good
	failNext  int             // the next sends fail transiently
	throttle  int             // the next sends are throttled
	fatal     bool            // fail every send as misconfigured
	closed    bool
	beforeAck func(b exporters.Batch) // called before acknowledging
}

func (s *faultSink) Send(_ context.Context, b exporters.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends++
	switch {
	case s.fatal:
		return exporters.Fatal(errors.New("401 invalid token"))
	case s.failNext > 0:
		s.failNext--
		return errors.New("503 server busy")
	case s.throttle > 0:
		s.throttle--
		return exporters.Throttle(20*time.Millisecond, errors.New("429"))
	}
	if s.beforeAck != nil {
		s.beforeAck(b)
	}
	if b.Anchor != nil {
		s.anchors = append(s.anchors, b.Anchor)
	}
	rej := map[int]string{}
	for i, e := range b.Events {
		if s.poisoned[e.Evidence.RecordID] {
			rej[i] = "invalid-event-number"
			continue
		}
		s.got = append(s.got, e)
	}
	if len(rej) > 0 {
		return &exporters.RejectedError{Reasons: rej}
	}
	return nil
}

func (s *faultSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *faultSink) leaves() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, len(s.got))
	for i, e := range s.got {
		out[i] = e.Evidence.LeafIndex
	}
	return out
}

type run struct {
	cancel context.CancelFunc
	done   chan error
	state  *exporters.StateDir
}

func startRunner(t *testing.T, l *testLog, stateDir string, sinks ...exporters.SinkSpec) *run {
	t.Helper()
	st, err := exporters.OpenStateDir(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := exporters.New(exporters.Config{
		Source: exporters.NewFileSource(l.log.TilesDir(), l.v), State: st, Sinks: sinks,
		PollInterval: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rn := &run{cancel: cancel, done: make(chan error, 1), state: st}
	go func() { rn.done <- r.Run(ctx) }()
	t.Cleanup(func() { rn.stop(t) })
	return rn
}

func (r *run) stop(t *testing.T) error {
	t.Helper()
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	err := <-r.done
	r.state.Close()
	return err
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestRunnerDeliversEveryLeafInOrderThroughFailures(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	l.appendRecords(t, "a", 700, nil, nil)

	sink := &faultSink{poisoned: map[string]bool{"a-00123": true}, failNext: 3, throttle: 2}
	state := t.TempDir()
	r := startRunner(t, l, state, exporters.SinkSpec{Name: "siem", Sink: sink, BatchSize: 100, BreakerFailures: 2, BreakerOpen: 50 * time.Millisecond})
	testutil.Eventually(t, 20*time.Second, func() bool { return len(sink.leaves()) == 699 }, "699 leaves delivered")
	l.appendRecords(t, "b", 300, nil, nil)
	testutil.Eventually(t, 20*time.Second, func() bool { return len(sink.leaves()) == 999 }, "999 leaves delivered")
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	want := slices.DeleteFunc(seq(0, 1000), func(i uint64) bool { return i == 123 })
	if got := sink.leaves(); !slices.Equal(got, want) {
		t.Fatalf("delivered leaves out of order or missing: %v…", got[:min(10, len(got))])
	}
	for _, e := range sink.got {
		if e.Evidence.Origin != "exporters.test/log" || e.Evidence.TreeSize <= e.Evidence.LeafIndex || e.Evidence.RecordID == "" {
			t.Fatalf("event without its evidence: %+v", e.Evidence)
		}
	}
	// Each event's tree size is that of an anchor the sink held no later
	// than the event.
	if len(sink.anchors) == 0 || sink.anchors[len(sink.anchors)-1].TreeSize != 1000 {
		t.Fatalf("anchors: %d, last not at 1000", len(sink.anchors))
	}
	for _, a := range sink.anchors {
		if _, err := note.Open(a.Note, note.VerifierList(v)); err != nil {
			t.Fatalf("anchor does not verify: %v", err)
		}
	}
	dls, err := exporters.ReadDeadLetters(state, "siem")
	if err != nil || len(dls) != 1 || dls[0].RecordID != "a-00123" || dls[0].LeafIndex != 123 || dls[0].Reason != "invalid-event-number" {
		t.Fatalf("dead letters: %+v, %v", dls, err)
	}
	st, err := exporters.LoadStatus(state, "siem")
	if err != nil || st.Cursor != 1000 || st.LagLeaves != 0 || st.DeadLettered != 1 || st.Delivered != 999 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if !sink.closed {
		t.Fatal("sink not closed")
	}
}

func TestRunnerResumesFromItsCursor(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	l.appendRecords(t, "a", 600, nil, nil)
	state := t.TempDir()

	// The first run stops after the sink acknowledged some batches.
	first := &faultSink{}
	r := startRunner(t, l, state, exporters.SinkSpec{Name: "s", Sink: first, BatchSize: 50})
	testutil.Eventually(t, 20*time.Second, func() bool { return len(first.leaves()) >= 200 }, "200 leaves")
	_ = r.stop(t)
	c, err := exporters.LoadCursor(state, "s")
	if err != nil {
		t.Fatal(err)
	}
	if c.Next != uint64(len(first.leaves())) {
		t.Fatalf("cursor %d after %d acknowledged leaves", c.Next, len(first.leaves()))
	}

	second := &faultSink{}
	startRunner(t, l, state, exporters.SinkSpec{Name: "s", Sink: second, BatchSize: 50})
	testutil.Eventually(t, 20*time.Second, func() bool { return len(second.leaves()) == 600-int(c.Next) }, "the rest")
	if got := append(first.leaves(), second.leaves()...); !slices.Equal(got, seq(0, 600)) {
		t.Fatalf("leaves lost or doubled across a restart")
	}
}

func TestRunnerReplayAndStateDirLock(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	l.appendRecords(t, "a", 100, nil, nil)
	state := t.TempDir()
	sink := &faultSink{}
	startRunner(t, l, state, exporters.SinkSpec{Name: "s", Sink: sink})
	testutil.Eventually(t, 10*time.Second, func() bool { return len(sink.leaves()) == 100 }, "100 leaves")

	if _, err := exporters.OpenStateDir(state); err == nil {
		t.Fatal("a second exporter could take the same state dir")
	}
	if err := exporters.RequestReplay(state, "s", 90); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(sink.leaves()) == 110 }, "leaves 90..99 again")
	if got := sink.leaves()[100:]; !slices.Equal(got, seq(90, 100)) {
		t.Fatalf("replayed %v", got)
	}
}

func TestRunnerRoutesByRegionAndDataClass(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	regions := []string{"", "eu", "us"}
	classes := []string{"", "pii", "internal"}
	l.appendRecords(t, "r", 90, func(i int) string { return regions[i%3] }, func(i int) string { return classes[(i/3)%3] })

	eu := &faultSink{}
	vendor := &faultSink{}
	startRunner(t, l, t.TempDir(),
		exporters.SinkSpec{Name: "eu", Sink: eu, Route: exporters.Route{Regions: []string{"eu"}}},
		exporters.SinkSpec{Name: "vendor", Sink: vendor, Route: exporters.Route{DataClasses: []string{"internal"}}},
	)
	// eu: records with region eu or none (60); vendor: class internal or none (60).
	testutil.Eventually(t, 10*time.Second, func() bool { return len(eu.leaves()) == 60 && len(vendor.leaves()) == 60 }, "routed leaves")
	for _, e := range eu.got {
		if i := e.Evidence.LeafIndex; regions[i%3] == "us" {
			t.Fatalf("leaf %d of region us reached the eu sink", i)
		}
	}
	for _, e := range vendor.got {
		if i := e.Evidence.LeafIndex; classes[(i/3)%3] == "pii" {
			t.Fatalf("pii leaf %d reached the vendor sink", i)
		}
	}
}

// TestRunnerFiltersWithCEL: a sink's CEL filter decides which of its
// routed records it receives; a record the expression cannot be evaluated
// on is dead-lettered for that sink with the reason, not dropped, and the
// other sinks are not affected.
func TestRunnerFiltersWithCEL(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	regions := []string{"", "eu", "us"}
	classes := []string{"", "pii", "internal"}
	l.appendRecords(t, "f", 90, func(i int) string { return regions[i%3] }, func(i int) string { return classes[(i/3)%3] })
	compile := func(expr string) func([]byte) (bool, error) {
		f, err := filter.Compile(expr)
		if err != nil {
			t.Fatal(err)
		}
		return f.Match
	}
	us, pii := &faultSink{}, &faultSink{}
	state := t.TempDir()
	startRunner(t, l, state,
		// Records without a region cannot be evaluated: 30 dead letters.
		exporters.SinkSpec{Name: "us", Sink: us, Route: exporters.Route{Filter: compile(`record.region == "us"`)}},
		exporters.SinkSpec{Name: "pii", Sink: pii, Route: exporters.Route{Filter: compile(`has(record.data_class) && record.data_class == "pii"`)}},
	)
	testutil.Eventually(t, 10*time.Second, func() bool {
		dl, _ := exporters.ReadDeadLetters(state, "us")
		return len(us.leaves()) == 30 && len(pii.leaves()) == 30 && len(dl) == 30
	}, "filtered leaves and dead letters")
	for _, e := range us.got {
		if i := e.Evidence.LeafIndex; regions[i%3] != "us" {
			t.Fatalf("leaf %d of region %q reached the us sink", i, regions[i%3])
		}
	}
	for _, e := range pii.got {
		if i := e.Evidence.LeafIndex; classes[(i/3)%3] != "pii" {
			t.Fatalf("leaf %d of class %q reached the pii sink", i, classes[(i/3)%3])
		}
	}
	dl, _ := exporters.ReadDeadLetters(state, "us")
	for _, d := range dl {
		if regions[d.LeafIndex%3] != "" || !strings.Contains(d.Reason, "filter: no such key: region") {
			t.Fatalf("dead letter %+v: want only records without a region, with the filter's error", d)
		}
	}
	if dl, _ := exporters.ReadDeadLetters(state, "pii"); len(dl) != 0 {
		t.Fatalf("the pii sink's filter guards with has(): no dead letters expected, got %d", len(dl))
	}
}

// TestRunnerDeadLettersALeafThatIsNotARecord: a leaf in the log that is
// not a call record (a log written by other software, or by a signer
// that let one through) is proven like every leaf, then dead-lettered in
// every sink, routed or not, naming the leaf; delivery goes on past it
// instead of retrying a read that cannot succeed.
func TestRunnerDeadLettersALeafThatIsNotARecord(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	l.appendRecords(t, "a", 3, nil, nil)
	if _, err := l.log.Append(context.Background(), []ledger.Entry{{ID: "not-a-record", Data: []byte(`["record_id","x"]`)}}); err != nil {
		t.Fatal(err)
	}
	l.appendRecords(t, "b", 3, nil, nil)
	all, eu := &faultSink{}, &faultSink{}
	state := t.TempDir()
	startRunner(t, l, state,
		exporters.SinkSpec{Name: "all", Sink: all, BatchSize: 2},
		exporters.SinkSpec{Name: "eu", Sink: eu, Route: exporters.Route{Regions: []string{"eu"}}},
	)
	testutil.Eventually(t, 10*time.Second, func() bool {
		dl, _ := exporters.ReadDeadLetters(state, "eu")
		return len(all.leaves()) == 6 && len(eu.leaves()) == 6 && len(dl) == 1
	}, "six records delivered past the leaf that is not one, which is dead-lettered")
	for _, got := range [][]uint64{all.leaves(), eu.leaves()} {
		if want := []uint64{0, 1, 2, 4, 5, 6}; !slices.Equal(got, want) {
			t.Fatalf("delivered leaves %v, want %v", got, want)
		}
	}
	for _, sink := range []string{"all", "eu"} {
		dl, err := exporters.ReadDeadLetters(state, sink)
		if err != nil || len(dl) != 1 || dl[0].LeafIndex != 3 || !strings.Contains(dl[0].Reason, "leaf 3: not a call record") {
			t.Fatalf("%s: dead letters %+v %v; want leaf 3, not a call record", sink, dl, err)
		}
	}
}

func TestRunnerStopsOnAForkedLog(t *testing.T) {
	s, v := newKeys(t)
	dir := t.TempDir()
	l := openLog(t, dir, s, v)
	l.appendRecords(t, "a", 50, nil, nil)
	state := t.TempDir()
	sink := &faultSink{}
	r := startRunner(t, l, state, exporters.SinkSpec{Name: "s", Sink: sink})
	testutil.Eventually(t, 10*time.Second, func() bool { return len(sink.leaves()) == 50 }, "50 leaves")
	_ = r.stop(t)

	// Another log under the same key and origin with a different history:
	// what an operator rewriting the log would serve.
	forked := openLog(t, t.TempDir(), s, v)
	forked.appendRecords(t, "evil", 80, nil, nil)
	sink2 := &faultSink{}
	r2 := startRunner(t, forked, state, exporters.SinkSpec{Name: "s", Sink: sink2})
	select {
	case err := <-r2.done:
		r2.cancel, r2.done = nil, nil
		r2.state.Close()
		if !errors.Is(err, exporters.ErrInconsistent) {
			t.Fatalf("runner over a forked log returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("runner kept running over a forked log")
	}
	if n := len(sink2.leaves()); n != 0 {
		t.Fatalf("%d leaves of the forked log were exported", n)
	}
}

func TestRunnerKeepsCursorWhileSinkIsMisconfigured(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	l.appendRecords(t, "a", 20, nil, nil)
	state := t.TempDir()
	sink := &faultSink{fatal: true}
	startRunner(t, l, state, exporters.SinkSpec{Name: "s", Sink: sink, BreakerFailures: 100})
	testutil.Eventually(t, 10*time.Second, func() bool {
		st, err := exporters.LoadStatus(state, "s")
		return err == nil && st.LastError != "" && st.LagLeaves == 20
	}, "status shows the fatal error and the lag")
	c, _ := exporters.LoadCursor(state, "s")
	if c.Next != 0 {
		t.Fatalf("cursor moved to %d while the sink refused everything", c.Next)
	}
	if dls, _ := exporters.ReadDeadLetters(state, "s"); len(dls) != 0 {
		t.Fatalf("a misconfigured sink dead-lettered %d events", len(dls))
	}
	sink.mu.Lock()
	sink.fatal = false
	sink.mu.Unlock()
	testutil.Eventually(t, 10*time.Second, func() bool { return len(sink.leaves()) == 20 }, "delivery once fixed")
}

// TestSourceRejectsTamperedEntriesAndTiles: a byte changed in an entry
// bundle or in a hash tile on disk (what a compromised log host could
// serve) never reaches a sink: the batch does not lead to the signed root.
func TestSourceRejectsTamperedEntriesAndTiles(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	l.appendRecords(t, "t", 600, nil, nil)
	src := exporters.NewFileSource(l.log.TilesDir(), v)
	a, err := src.Latest(context.Background(), nil)
	if err != nil || a.TreeSize != 600 {
		t.Fatalf("latest: %+v %v", a, err)
	}
	if _, err := src.Read(context.Background(), a, 300, 400); err != nil {
		t.Fatalf("untampered read: %v", err)
	}
	tamper := func(t *testing.T, rel string, find, repl string) {
		t.Helper()
		p := filepath.Join(l.log.TilesDir(), rel)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, []byte(find))
		if i < 0 {
			t.Fatalf("%q not in %s", find, rel)
		}
		orig := slices.Clone(b)
		copy(b[i:], repl)
		os.WriteFile(p, b, 0o644)
		t.Cleanup(func() { os.WriteFile(p, orig, 0o644) })
	}
	t.Run("entry bundle", func(t *testing.T) {
		tamper(t, "tile/entries/001", "t-00350", "t-00X50") // leaf 350's record id
		_, err := src.Read(context.Background(), a, 300, 400)
		if !errors.Is(err, exporters.ErrInconsistent) {
			t.Fatalf("a tampered entry was read: %v", err)
		}
	})
	t.Run("entry bundle, no longer a record", func(t *testing.T) {
		// The altered leaf has no record id: still the log's
		// inconsistency (the proof is checked first), not a bad record.
		tamper(t, "tile/entries/001", `"record_id":"t-00350"`, `"record_ix":"t-00350"`)
		_, err := src.Read(context.Background(), a, 300, 400)
		if !errors.Is(err, exporters.ErrInconsistent) {
			t.Fatalf("a tampered entry was read: %v", err)
		}
	})
	t.Run("hash tile", func(t *testing.T) {
		raw, _ := os.ReadFile(filepath.Join(l.log.TilesDir(), "tile/0/001"))
		tamper(t, "tile/0/001", string(raw[100:104]), "\x00\x01\x02\x03") // leaf 259's hash, below the batch
		_, err := src.Read(context.Background(), a, 300, 400)
		if !errors.Is(err, exporters.ErrInconsistent) {
			t.Fatalf("a tampered tile was used: %v", err)
		}
	})
}

// TestSourceReadsConcurrently: the sinks of a runner, and each sink's
// read-ahead, read one Source at once; batches that end before the
// checkpoint's size are proven with a shared proof builder, which must
// not be used by two readers at the same time.
func TestSourceReadsConcurrently(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	l.appendRecords(t, "c", 3000, nil, nil)
	src := exporters.NewFileSource(l.log.TilesDir(), v)
	a, err := src.Latest(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				from := uint64((g*37 + i*53) % 2900)
				if _, err := src.Read(context.Background(), a, from, from+50); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestSinkCountersStartAtZero: every sink's delivered and dead-letter
// counters exist at 0 from the start, so the first dead letters after a
// restart are an increase that `increase(...[1h]) > 0` (the shipped
// ExportDeadLetters rule) sees, not a series that appears at 1.
func TestSinkCountersStartAtZero(t *testing.T) {
	s, v := newKeys(t)
	l := openLog(t, t.TempDir(), s, v)
	st, err := exporters.OpenStateDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := exporters.New(exporters.Config{
		Source: exporters.NewFileSource(l.log.TilesDir(), l.v), State: st, Registerer: reg,
		Sinks: []exporters.SinkSpec{{Name: "splunk", Sink: &faultSink{}}, {Name: "siem-eu", Sink: &faultSink{}}},
	}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "sink" && m.GetCounter() != nil {
					got[mf.GetName()+"/"+lp.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	for _, name := range []string{"proofline_export_delivered_total", "proofline_export_deadlettered_total"} {
		for _, sink := range []string{"splunk", "siem-eu"} {
			if v, ok := got[name+"/"+sink]; !ok || v != 0 {
				t.Errorf("%s{sink=%q}: present %v, value %v; want 0 from the start", name, sink, ok, v)
			}
		}
	}
}
