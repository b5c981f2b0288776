// Command exporters benchmarks delivery through the exporters runner
// against a bare client feeding the same receiver pre-encoded batches, per
// sink, in one run on the same records:
//
//   - runner: proofline's path — read entry bundles, prove every leaf against
//     the signed checkpoint, route, encode, send, wait for the receiver's
//     acknowledgement, fsync the cursor;
//   - bare: the same batches, encoded before the clock starts, written by
//     the simplest client (HEC: gzip + POST, no indexer ack; files: one zstd
//     frame + fsync per batch).
//
// It reports events/s and CPU µs per event for both and their ratio, then
// the export lag (append → delivered) at a steady ingest rate, to HEC (its
// test receiver decoding every event on the same cores) and to files. Records are
// realistic: random UUIDv7 ids, random SHA-256 digests and W3C ids.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/bench/internal/gen"
	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/filesink"
	"github.com/proofline/proofline/exporters/splunkhec"
	"github.com/proofline/proofline/exporters/splunkhec/hectest"
	"github.com/proofline/proofline/internal/cpustat"
	"github.com/proofline/proofline/ledger"
)

func main() {
	n := flag.Int("records", 100000, "records in the log")
	batch := flag.Int("batch", 500, "events per batch")
	rate := flag.Int("rate", 20000, "records/s appended during the lag run")
	lagSecs := flag.Int("lag-seconds", 10, "length of the lag run")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run")
	sinks := flag.String("sinks", "hec,files", "which sinks to measure (comma-separated: hec, files)")
	flag.Parse()
	want := map[string]bool{}
	for _, s := range strings.Split(*sinks, ",") {
		switch s = strings.TrimSpace(s); s {
		case "hec", "files":
			want[s] = true
		default:
			fmt.Fprintf(os.Stderr, "-sinks: unknown sink %q (hec, files)\n", s)
			os.Exit(2)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*n, *batch, *rate, *lagSecs, want); err != nil {
		fmt.Fprintln(os.Stderr, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

var tools = []string{"search_tickets", "create_ticket", "get_page", "send_email", "transfer_funds", "list_files", "read_file", "query_db"}

func record(i int, ts time.Time) ledger.Entry {
	id := uuid.Must(uuid.NewV7()).String()
	rec := map[string]any{
		"record_id": id, "ts_start": ts.UTC().Format(time.RFC3339Nano), "ts_end": ts.Add(time.Duration(20+i%300) * time.Millisecond).UTC().Format(time.RFC3339Nano),
		"actor":       map[string]any{"id": fmt.Sprintf("agent-%d", i%50), "type": "agent", "on_behalf_of": fmt.Sprintf("user%d@example.com", i%200)},
		"tool":        map[string]any{"name": tools[i%len(tools)], "server": fmt.Sprintf("mcp-%d", i%8), "version": "1.4.2", "group": "ops"},
		"policy":      map[string]any{"decision": "allow"},
		"outcome":     map[string]any{"status": "ok"},
		"mcp":         map[string]any{"method": "tools/call", "session_id": gen.RandHex(16), "request_id": fmt.Sprint(i), "transport": "http"},
		"trace":       map[string]any{"trace_id": gen.RandHex(16), "span_id": gen.RandHex(8)},
		"args_sha256": gen.RandHex(32), "result_sha256": gen.RandHex(32),
		"ingested_by": "gw-1",
	}
	b, _ := json.Marshal(rec)
	return ledger.Entry{ID: id, Data: b}
}

// cpu is the process's CPU time so far; zero where it cannot be read.
func cpu() time.Duration {
	d, _ := cpustat.Self()
	return d
}

type measure struct {
	events int
	wall   time.Duration
	cpu    time.Duration
}

func (m measure) rate() float64 { return float64(m.events) / m.wall.Seconds() }
func (m measure) cpuPer() float64 {
	return float64(m.cpu.Microseconds()) / float64(m.events)
}

func run(n, batch, rate, lagSecs int, want map[string]bool) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-exporters")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	skey, vkey, _ := note.GenerateKey(rand.Reader, "bench.proofline/log")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	l, err := ledger.Open(ctx, ledger.Config{Dir: filepath.Join(dir, "log"), Signer: s, Verifier: v,
		BatchMaxAge: 20 * time.Millisecond, BatchMaxSize: 4096, CheckpointInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer l.Close(ctx)
	start := time.Now().Add(-time.Hour)
	for off := 0; off < n; off += 10000 {
		es := make([]ledger.Entry, 0, 10000)
		for i := off; i < min(off+10000, n); i++ {
			es = append(es, record(i, start.Add(time.Duration(i)*time.Millisecond)))
		}
		if _, err := l.Append(ctx, es); err != nil {
			return err
		}
	}
	if err := waitCheckpoint(ctx, l, uint64(n)); err != nil {
		return err
	}
	src := exporters.NewFileSource(l.TilesDir(), v)
	a, err := src.Latest(ctx, nil)
	if err != nil {
		return err
	}
	// Pre-read every event once for the bare clients (outside their clock).
	events, err := src.Read(ctx, a, 0, a.TreeSize)
	if err != nil {
		return err
	}
	fmt.Printf("log: %d records, %.0f bytes per leaf on average\n\n", len(events), avgLen(events))
	fmt.Printf("%-6s %14s %14s %14s %14s %8s %10s\n", "sink", "runner ev/s", "bare ev/s", "runner µs/ev", "bare µs/ev", "ratio", "cpu ratio")

	// HEC, with indexer acknowledgement for the runner (what a user runs).
	if want["hec"] {
		hec := hectest.New("t", true)
		hecSink, _ := splunkhec.New(splunkhec.Config{URL: hec.URL, Token: "t", Ack: true, AckPoll: 2 * time.Millisecond, Sourcetype: "proofline:call"})
		rm, err := viaRunner(ctx, src, filepath.Join(dir, "state-hec"), hecSink, batch, n)
		if err != nil {
			return err
		}
		hecBare := hectest.New("t", false)
		bm := bareHEC(hecBare.URL, events, batch)
		report("hec", rm, bm)
		hec.Close()
		hecBare.Close()
	}

	if want["files"] {
		fs, _ := filesink.New(filesink.Config{Dir: filepath.Join(dir, "files-runner")})
		rm, err := viaRunner(ctx, src, filepath.Join(dir, "state-file"), fs, batch, n)
		if err != nil {
			return err
		}
		bm, err := bareFile(filepath.Join(dir, "files-bare"), events, batch)
		if err != nil {
			return err
		}
		report("file", rm, bm)
	}

	// Lag: append at a steady rate while a runner delivers to HEC (its
	// receiver on the same two cores), then to files (no receiver).
	base := n
	if want["hec"] {
		lagHEC := hectest.New("t", true)
		defer lagHEC.Close()
		inner, _ := splunkhec.New(splunkhec.Config{URL: lagHEC.URL, Token: "t", Ack: true, AckPoll: 2 * time.Millisecond})
		if err := lagRun(ctx, l, src, filepath.Join(dir, "state-lag"), "HEC with indexer ack, its test receiver in this process",
			inner, batch, rate, lagSecs, base); err != nil {
			return err
		}
		base += rate * lagSecs
	}
	if want["files"] {
		lagFiles, _ := filesink.New(filesink.Config{Dir: filepath.Join(dir, "files-lag")})
		return lagRun(ctx, l, src, filepath.Join(dir, "state-lag-files"), "files: rotated NDJSON, fsynced per batch",
			lagFiles, batch, rate, lagSecs, base)
	}
	return nil
}

func avgLen(es []exporters.Event) float64 {
	t := 0
	for _, e := range es {
		t += len(e.Record)
	}
	return float64(t) / float64(len(es))
}

func report(name string, r, b measure) {
	fmt.Printf("%-6s %14.0f %14.0f %14.1f %14.1f %7.0f%% %9.2fx\n", name, r.rate(), b.rate(), r.cpuPer(), b.cpuPer(),
		100*r.rate()/b.rate(), r.cpuPer()/b.cpuPer())
}

func waitCheckpoint(ctx context.Context, l *ledger.Log, size uint64) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if cp, _, err := l.Checkpoint(ctx); err == nil && cp.Size >= size {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no checkpoint at %d", size)
}

func viaRunner(ctx context.Context, src *exporters.Source, state string, sink exporters.Sink, batch, n int) (measure, error) {
	st, err := exporters.OpenStateDir(state)
	if err != nil {
		return measure{}, err
	}
	defer st.Close()
	cs := &countingSink{Sink: sink, n: n, all: make(chan struct{})}
	r, err := exporters.New(exporters.Config{Source: src, State: st, PollInterval: 5 * time.Millisecond,
		Sinks: []exporters.SinkSpec{{Name: "s", Sink: cs, BatchSize: batch}}})
	if err != nil {
		return measure{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	c0, t0 := cpu(), time.Now()
	go func() { done <- r.Run(ctx) }()
	<-cs.all
	m := measure{events: n, wall: time.Since(t0), cpu: cpu() - c0}
	cancel()
	return m, <-done
}

func bareHEC(url string, events []exporters.Event, batch int) measure {
	var bodies [][]byte
	for off := 0; off < len(events); off += batch {
		var buf bytes.Buffer
		for _, e := range events[off:min(off+batch, len(events))] {
			b, _ := json.Marshal(map[string]any{"sourcetype": "proofline:call", "event": exporters.NativeEvent{Type: exporters.TypeCall, Evidence: e.Evidence, Record: e.Record},
				"fields": map[string]any{"leaf_index": e.Evidence.LeafIndex}})
			buf.Write(b)
			buf.WriteByte('\n')
		}
		bodies = append(bodies, buf.Bytes())
	}
	hc := &http.Client{}
	c0, t0 := cpu(), time.Now()
	for _, b := range bodies {
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed) // the level the HEC sink uses
		zw.Write(b)
		zw.Close()
		req, _ := http.NewRequest(http.MethodPost, url+"/services/collector/event", &z)
		req.Header.Set("Authorization", "Splunk t")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := hc.Do(req)
		if err != nil || resp.StatusCode != 200 {
			panic(fmt.Sprint("bare HEC post: ", err))
		}
		resp.Body.Close()
	}
	return measure{events: len(events), wall: time.Since(t0), cpu: cpu() - c0}
}

func bareFile(dir string, events []exporters.Event, batch int) (measure, error) {
	os.MkdirAll(dir, 0o700)
	var lines [][]byte
	for off := 0; off < len(events); off += batch {
		var buf bytes.Buffer
		for _, e := range events[off:min(off+batch, len(events))] {
			b, _ := exporters.EncodeNative(e)
			buf.Write(b)
			buf.WriteByte('\n')
		}
		lines = append(lines, buf.Bytes())
	}
	enc, _ := zstd.NewWriter(nil)
	f, err := os.Create(filepath.Join(dir, "bare.ndjson.zst"))
	if err != nil {
		return measure{}, err
	}
	defer f.Close()
	c0, t0 := cpu(), time.Now()
	for _, b := range lines {
		if _, err := f.Write(enc.EncodeAll(b, nil)); err != nil {
			return measure{}, err
		}
		if err := f.Sync(); err != nil {
			return measure{}, err
		}
	}
	return measure{events: len(events), wall: time.Since(t0), cpu: cpu() - c0}, nil
}

// countingSink closes all once the sink has acknowledged n events: the
// end of a runner's measure without polling its cursor file (which, read
// every millisecond, cost the runner's process a share of its CPU).
type countingSink struct {
	exporters.Sink
	n, got int
	all    chan struct{}
}

func (s *countingSink) Send(ctx context.Context, b exporters.Batch) error {
	err := s.Sink.Send(ctx, b)
	if err == nil && s.got < s.n {
		if s.got += len(b.Events); s.got >= s.n {
			close(s.all)
		}
	}
	return err
}

// timingSink records when each leaf was acknowledged.
type timingSink struct {
	exporters.Sink
	mu sync.Mutex
	at map[uint64]time.Time
}

func (s *timingSink) Send(ctx context.Context, b exporters.Batch) error {
	err := s.Sink.Send(ctx, b)
	if err == nil {
		now := time.Now()
		s.mu.Lock()
		for _, e := range b.Events {
			s.at[e.Evidence.LeafIndex] = now
		}
		s.mu.Unlock()
	}
	return err
}

func lagRun(ctx context.Context, l *ledger.Log, src *exporters.Source, state, label string, inner exporters.Sink, batch, rate, secs, base int) error {
	ts := &timingSink{Sink: inner, at: map[uint64]time.Time{}}
	st, err := exporters.OpenStateDir(state)
	if err != nil {
		return err
	}
	defer st.Close()
	// Start the cursor at the end of what is already there.
	st.SaveCursor("s", exporters.Cursor{Next: uint64(base)})
	r, err := exporters.New(exporters.Config{Source: src, State: st, PollInterval: 50 * time.Millisecond,
		Sinks: []exporters.SinkSpec{{Name: "s", Sink: ts, BatchSize: batch}}})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()

	type addedAt struct {
		p  *ledger.Pending
		at time.Time
	}
	var pending []addedAt
	appended := map[uint64]time.Time{}
	// The records are made before the run, so that making them (JSON,
	// random ids) does not share the CPU with what is measured; each
	// carries the time it is due. Every 10 ms the run appends every record
	// due by then, catching up after a slow tick, so the rate offered is
	// the rate asked (with a ticker alone, dropped ticks offered 16–17k/s
	// of 20k/s).
	start := time.Now().Add(100 * time.Millisecond)
	recs := make([]ledger.Entry, rate*secs)
	for i := range recs {
		recs[i] = record(base+i, start.Add(time.Duration(i)*time.Second/time.Duration(rate)))
	}
	tick := time.NewTicker(10 * time.Millisecond)
	total := 0
	for total < len(recs) {
		<-tick.C
		due := min(len(recs), int(time.Since(start).Seconds()*float64(rate)))
		if due <= total {
			continue
		}
		// Add hands the batch to the log without waiting, as the signer
		// does; the append time is when it returned.
		p, err := l.Add(ctx, recs[total:due])
		if err != nil {
			return err
		}
		pending = append(pending, addedAt{p, time.Now()})
		total = due
	}
	tick.Stop()
	for _, pa := range pending {
		res, err := pa.p.Wait()
		if err != nil {
			return err
		}
		for _, a := range res {
			appended[a.Index] = pa.at
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ts.mu.Lock()
		got := len(ts.at)
		ts.mu.Unlock()
		if got >= total {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	var lags []time.Duration
	ts.mu.Lock()
	for i, at := range appended {
		if d, ok := ts.at[i]; ok {
			lags = append(lags, d.Sub(at))
		}
	}
	ts.mu.Unlock()
	slices.Sort(lags)
	if len(lags) == 0 {
		return fmt.Errorf("lag run: nothing delivered")
	}
	q := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	fmt.Printf("\nlag at %d records/s for %ds (%s; append returned → the sink's Send returned; includes the log's 100 ms checkpoint interval and the runner's 50 ms poll):\n", rate, secs, label)
	fmt.Printf("  delivered %d of %d; p50 %s  p99 %s  max %s\n", len(lags), total, q(0.50).Round(time.Millisecond), q(0.99).Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
	return nil
}
