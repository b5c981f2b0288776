// Command ingest benchmarks proofline's ingest→log path against the raw
// engines it sits on, in one run on one machine: raw JetStream async
// publish and raw tessera append of the same payloads, then proofline end
// to end (HTTP post → integrated in the signed log), then the latency from
// a 202 to inclusion in a published checkpoint at a paced offered load.
//
// Machines are shared and noisy, so the figures that matter are the
// ratios of proofline to the raw engines measured minutes apart; the
// absolute numbers are context.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/bench/internal/gen"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/cpustat"
	"github.com/proofline/proofline/schemas"
)

type config struct {
	records  int
	rate     int
	duration time.Duration
	workers  int
	batch    int
	out      string
	trace    string
}

func main() {
	var c config
	flag.IntVar(&c.records, "records", 200_000, "records for the throughput runs")
	flag.IntVar(&c.rate, "rate", 20_000, "offered load (records/s) for the latency run")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of the latency run")
	flag.IntVar(&c.workers, "workers", 8, "concurrent HTTP clients in the throughput run")
	flag.IntVar(&c.batch, "batch", 500, "records per HTTP request in the throughput run")
	flag.StringVar(&c.out, "out", "", "also write the Markdown report to this file")
	flag.StringVar(&c.trace, "latency-trace", "", "write each latency batch (offered rate, seconds since the run began at its 202, latency in seconds) to this CSV file: whether a tail is a stall or a queue growing shows there")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, args []string) error {
	tmp, err := os.MkdirTemp("", "proofline-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	perRun := c.rate * int(c.duration.Seconds()+1)
	payloads, err := makePayloads(c.records + 3*perRun)
	if err != nil {
		return err
	}
	avg := 0
	for _, p := range payloads[:c.records] {
		avg += len(p.data)
	}
	avg /= c.records
	fmt.Fprintf(os.Stderr, "payloads: %d, %d bytes average\n", len(payloads), avg)

	var cpu cpuPerRecord
	n := float64(c.records)
	t0 := selfCPU()
	js, err := rawJetStream(ctx, filepath.Join(tmp, "js"), payloads[:c.records])
	cpu.js = (selfCPU() - t0) / n
	if err != nil {
		return fmt.Errorf("raw jetstream: %w", err)
	}
	fmt.Fprintf(os.Stderr, "raw jetstream: %.0f records/s\n", js)
	t0 = selfCPU()
	ts, err := rawTessera(ctx, filepath.Join(tmp, "tessera"), payloads[:c.records])
	cpu.ts = (selfCPU() - t0) / n
	if err != nil {
		return fmt.Errorf("raw tessera: %w", err)
	}
	fmt.Fprintf(os.Stderr, "raw tessera: %.0f records/s\n", ts)

	srv, err := startProofline(ctx, tmp)
	if err != nil {
		return err
	}
	defer srv.stop()
	t0, s0 := selfCPU(), procCPU(srv.cmd.Process.Pid)
	pl, err := srv.throughput(ctx, payloads[:c.records], c.workers, c.batch)
	cpu.server, cpu.loadgen = (procCPU(srv.cmd.Process.Pid)-s0)/n, (selfCPU()-t0)/n
	if err != nil {
		return fmt.Errorf("proofline end to end: %w\n%s", err, srv.logTail())
	}
	fmt.Fprintf(os.Stderr, "proofline: %.0f records/s\n", pl)
	// At the offered rate, then at twice it.
	var lats []*latencyResult
	rest := payloads[c.records:]
	for _, rate := range []int{c.rate, 2 * c.rate} {
		n := rate * int(c.duration.Seconds()+1)
		lat, err := srv.latency(ctx, rest[:n], rate, c.duration)
		if err != nil {
			return fmt.Errorf("latency run at %d/s: %w\n%s", rate, err, srv.logTail())
		}
		fmt.Fprintf(os.Stderr, "latency at %d/s: p99 %s\n", rate, lat.p99)
		lats = append(lats, lat)
		rest = rest[n:]
	}

	if c.trace != "" {
		if err := writeTrace(c.trace, lats); err != nil {
			return err
		}
	}
	report := renderReport(c, args, avg, js, ts, pl, srv.ackedRate, lats, cpu)
	fmt.Print(report)
	if c.out != "" {
		return os.WriteFile(c.out, []byte(report), 0o644)
	}
	return nil
}

type payload struct {
	id   string
	data []byte
}

// makePayloads builds realistic call records in canonical form, as the
// ingest API would publish them.
func makePayloads(n int) ([]payload, error) {
	tools := []string{"search_tickets", "create_ticket", "query_db", "send_email", "read_file", "web_fetch"}
	statuses := []string{"ok", "ok", "ok", "ok", "tool_error", "policy_blocked", "system_error", "timeout"}
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	out := make([]payload, n)
	for i := range out {
		ts := start.Add(time.Duration(i) * time.Millisecond)
		// Ids and digests are random, as in real traffic.
		rnd := [6]string{gen.RandHex(16), gen.RandHex(16), gen.RandHex(8), gen.RandHex(32), gen.RandHex(32), gen.RandHex(16)}
		id := rnd[0] // a UUIDv4's layout
		r := schemas.CallRecord{
			RecordID:     id[:8] + "-" + id[8:12] + "-4" + id[13:16] + "-a" + id[17:20] + "-" + id[20:32],
			TSStart:      schemas.Timestamp{Time: ts},
			TSEnd:        schemas.Timestamp{Time: ts.Add(time.Duration(5+i%300) * time.Millisecond)},
			Actor:        schemas.Actor{ID: fmt.Sprintf("agent-%d", i%50), Type: schemas.ActorAgent, OnBehalfOf: fmt.Sprintf("user-%d@example.com", i%500)},
			Tool:         schemas.Tool{Name: tools[i%len(tools)], Server: "mcp-" + tools[i%len(tools)], Version: "1.2.3", Group: fmt.Sprintf("group-%d", i%4)},
			MCP:          &schemas.MCP{Method: "tools/call", SessionID: rnd[5], RequestID: strconv.Itoa(i), Transport: schemas.TransportHTTP},
			Trace:        &schemas.Trace{TraceID: rnd[1], SpanID: rnd[2]},
			Policy:       schemas.Policy{Decision: schemas.DecisionAllow, Rule: "default"},
			Outcome:      schemas.Outcome{Status: statuses[i%len(statuses)]},
			ArgsSHA256:   rnd[3],
			ResultSHA256: rnd[4],
			Cost:         &schemas.Cost{Amount: float64(i%1000) / 10000, Currency: "USD", TokensIn: int64(i % 4000), TokensOut: int64(i % 900)},
			WorkflowID:   fmt.Sprintf("wf-%d", i%20),
			Region:       "eu-west-1",
			Attributes:   map[string]string{"env": "bench", "tenant": fmt.Sprintf("t-%d", i%10)},
			IngestedBy:   "bench",
		}
		b, err := r.Canonical()
		if err != nil {
			return nil, err
		}
		out[i] = payload{id: r.RecordID, data: b}
	}
	return out, nil
}

// rawJetStream publishes the payloads to the same stream definition
// proofline uses (embedded server, file store, Nats-Msg-Id) and waits for
// every ack.
func rawJetStream(ctx context.Context, dir string, ps []payload) (float64, error) {
	b, err := bus.Open(ctx, bus.Config{DataDir: dir})
	if err != nil {
		return 0, err
	}
	defer b.Close()
	start := time.Now()
	const window = 16384
	futures := make([]jetstream.PubAckFuture, 0, window)
	wait := func() error {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	for _, p := range ps {
		m := &nats.Msg{Subject: bus.SubjectRecords, Data: p.data, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, p.id)
		f, err := b.JS.PublishMsgAsync(m)
		if err != nil {
			return 0, err
		}
		futures = append(futures, f)
		if len(futures) == window {
			if err := wait(); err != nil {
				return 0, err
			}
		}
	}
	if err := wait(); err != nil {
		return 0, err
	}
	return float64(len(ps)) / time.Since(start).Seconds(), nil
}

// rawTessera appends the payloads to a POSIX tessera log configured as
// proofline's ledger is, and waits until every entry is sequenced.
func rawTessera(ctx context.Context, dir string, ps []payload) (float64, error) {
	skey, _, err := note.GenerateKey(rand.Reader, "bench.proofline/log")
	if err != nil {
		return 0, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return 0, err
	}
	// The appender's background loops run until their context ends, not
	// until shutdown: end it before the directory is removed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return 0, err
	}
	app, shutdown, _, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).WithBatching(4096, 20*time.Millisecond).
		WithCheckpointInterval(200*time.Millisecond).WithPushback(1<<20))
	if err != nil {
		return 0, err
	}
	defer shutdown(context.Background())
	start := time.Now()
	futures := make([]tessera.IndexFuture, len(ps))
	for i, p := range ps {
		futures[i] = app.Add(ctx, tessera.NewEntry(p.data))
	}
	for _, f := range futures {
		if _, err := f(); err != nil {
			return 0, err
		}
	}
	return float64(len(ps)) / time.Since(start).Seconds(), nil
}

// server is a `proofline serve` subprocess.
type server struct {
	// ackedRate is the rate at which the throughput run's records were
	// acknowledged with 202 (stored in JetStream), before the log.
	ackedRate                float64
	url, ingestTok, queryTok string
	cmd                      *exec.Cmd
	logs                     *bytes.Buffer
	mu                       sync.Mutex
}

func startProofline(ctx context.Context, tmp string) (*server, error) {
	// PROOFLINE_BENCH_BIN runs a binary built elsewhere (an earlier
	// commit, to compare versions with this bench in the same hour).
	bin := os.Getenv("PROOFLINE_BENCH_BIN")
	if bin == "" {
		bin = filepath.Join(tmp, "proofline")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/proofline")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("build proofline (run from the repository root): %w", err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	data := filepath.Join(tmp, "data")
	s := &server{url: "http://" + addr, logs: &bytes.Buffer{}}
	// The ingest→log path only: the span writer is another consumer with
	// its own benchmark.
	s.cmd = exec.Command(bin, append([]string{"serve", "--data", data, "--listen", addr, "--rate", "0", "--log-level", "warn", "--roles", "ingest,signer"},
		strings.Fields(os.Getenv("PROOFLINE_BENCH_SERVE_ARGS"))...)...)
	s.cmd.Stdout, s.cmd.Stderr = s, s
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		if resp, err := http.Get(s.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 600 {
			s.stop()
			return nil, fmt.Errorf("proofline not ready:\n%s", s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok := func(p, scope string) (string, error) {
		out, err := exec.Command(bin, "token", "issue", "--data", data, "--principal", p, "--scope", scope, "--ttl", "2h").Output()
		return strings.TrimSpace(string(out)), err
	}
	if s.ingestTok, err = tok("bench-gw", "ingest"); err != nil {
		s.stop()
		return nil, err
	}
	if s.queryTok, err = tok("bench-sre", "query"); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *server) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs.Len() > 1<<20 {
		s.logs.Reset()
	}
	return s.logs.Write(p)
}

func (s *server) logTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.logs.Bytes()
	return string(b[max(0, len(b)-4000):])
}

func (s *server) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
}

type batchResult struct {
	// lastID is the batch's last record: the signer appends a request's
	// records in order, so the batch is covered once this one is.
	lastID string
	acked  time.Time
}

// post sends one JSON array of records, as a gateway posting large
// batches would: asking for the minimal answer, which lists only the
// records not accepted (a binary from before it lists every record).
func (s *server) post(ctx context.Context, ps []payload) error {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, p := range ps {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(p.data)
	}
	buf.WriteByte(']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/v1/records", &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.ingestTok)
	req.Header.Set("Prefer", "return=minimal")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("post: %d %s", resp.StatusCode, body[:min(len(body), 300)])
	}
	var r struct {
		Accepted int               `json:"accepted"`
		Results  []json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return err
	}
	minimal := resp.Header.Get("Preference-Applied") == "return=minimal"
	if r.Accepted != len(ps) || (minimal && len(r.Results) != 0) || (!minimal && len(r.Results) != len(ps)) {
		return fmt.Errorf("post: %d of %d accepted", r.Accepted, len(ps))
	}
	return nil
}

// checkpointSize reads the size line of the published checkpoint.
func (s *server) checkpointSize(ctx context.Context) (uint64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/checkpoint", nil)
	req.Header.Set("Authorization", "Bearer "+s.queryTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	lines := strings.SplitN(string(body), "\n", 3)
	if resp.StatusCode != 200 || len(lines) < 2 {
		return 0, fmt.Errorf("checkpoint: %d %q", resp.StatusCode, body)
	}
	return strconv.ParseUint(lines[1], 10, 64)
}

func (s *server) waitSize(ctx context.Context, size uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n, err := s.checkpointSize(ctx); err == nil && n >= size {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("checkpoint did not reach %d in %s", size, timeout)
}

// throughput posts every payload as fast as workers allow and returns the
// rate at which they become covered by a published checkpoint.
func (s *server) throughput(ctx context.Context, ps []payload, workers, batch int) (float64, error) {
	base, err := s.checkpointSize(ctx)
	if err != nil {
		base = 0
	}
	work := make(chan []payload)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if err := s.post(ctx, b); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for i := 0; i < len(ps); i += batch {
		select {
		case work <- ps[i:min(i+batch, len(ps))]:
		case err := <-errc:
			close(work)
			return 0, err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	posted := time.Since(start)
	s.ackedRate = float64(len(ps)) / posted.Seconds()
	if err := s.waitSize(ctx, base+uint64(len(ps)), 5*time.Minute); err != nil {
		return 0, err
	}
	return float64(len(ps)) / time.Since(start).Seconds(), nil
}

// cpuPerRecord is CPU time per record, in µs, of each run.
type cpuPerRecord struct{ js, ts, server, loadgen float64 }

// selfCPU is this process's CPU time so far, in µs.
func selfCPU() float64 {
	d, err := cpustat.Self()
	if err != nil {
		return 0
	}
	return float64(d.Nanoseconds()) / 1e3
}

// procCPU is another process's CPU time so far, in µs, from /proc (Linux;
// clock ticks of 10 ms, ample over runs of seconds).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return (ut + st) * 1e6 / ticksPerSecond
}

type latencyResult struct {
	offered, achieved float64
	p50, p99, maxL    time.Duration
	batches           int
	// trace is each batch's 202 (since the run began) and latency, in
	// the order offered.
	trace []batchLatency
}

type batchLatency struct{ at, latency time.Duration }

// writeTrace writes the batches of every latency run as CSV.
func writeTrace(path string, lats []*latencyResult) error {
	var b strings.Builder
	b.WriteString("offered,at_s,latency_s\n")
	for _, l := range lats {
		for _, t := range l.trace {
			fmt.Fprintf(&b, "%.0f,%.3f,%.3f\n", l.offered, t.at.Seconds(), t.latency.Seconds())
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// latency offers rate records/s for d in 10 ms batches and measures, per
// batch, the time from its 202 to the first published checkpoint covering
// it: the first checkpoint seen (polled every 5 ms) whose size exceeds the
// leaf index of the batch's last record, looked up afterwards.
func (s *server) latency(ctx context.Context, ps []payload, rate int, d time.Duration) (*latencyResult, error) {
	type obs struct {
		t    time.Time
		size uint64
	}
	base, err := s.checkpointSize(ctx)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var seen []obs
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go func() {
		for pollCtx.Err() == nil {
			if n, err := s.checkpointSize(pollCtx); err == nil {
				mu.Lock()
				seen = append(seen, obs{time.Now(), n})
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	per := max(1, rate/100)
	ticks := int(d / (10 * time.Millisecond))
	results := make([]batchResult, 0, ticks)
	var rmu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	sem := make(chan struct{}, 32)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	sent := 0
	for i := 0; i < ticks && (i+1)*per <= len(ps); i++ {
		<-tick.C
		select {
		case sem <- struct{}{}:
		default:
			continue // the server is not keeping up: this batch is not offered
		}
		batch := ps[i*per : (i+1)*per]
		sent += len(batch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := s.post(ctx, batch)
			acked := time.Now()
			rmu.Lock()
			defer rmu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			results = append(results, batchResult{lastID: batch[len(batch)-1].id, acked: acked})
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return nil, firstErr
	}
	if err := s.waitSize(ctx, base+uint64(sent), time.Minute); err != nil {
		return nil, err
	}
	// The poller has its own round trips: stop it only once it has seen
	// the checkpoint waitSize saw, or the last batches look never covered.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		covered := len(seen) > 0 && seen[len(seen)-1].size >= base+uint64(sent)
		mu.Unlock()
		if covered || time.Now().After(deadline) {
			break
		}
	}
	stopPoll()
	leaves, err := s.leafIndexes(ctx, results)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	var lats []time.Duration
	trace := make([]batchLatency, 0, len(results))
	for i, r := range results {
		j, _ := slices.BinarySearchFunc(seen, leaves[i]+1, func(o obs, target uint64) int {
			switch {
			case o.size < target:
				return -1
			case o.size > target:
				return 1
			}
			return 0
		})
		for j < len(seen) && seen[j].size <= leaves[i] {
			j++
		}
		if j == len(seen) {
			return nil, errors.New("a batch was never seen covered")
		}
		lats = append(lats, max(0, seen[j].t.Sub(r.acked)))
		trace = append(trace, batchLatency{at: r.acked.Sub(start), latency: lats[len(lats)-1]})
	}
	slices.SortFunc(trace, func(a, b batchLatency) int { return cmp.Compare(a.at, b.at) })
	slices.Sort(lats)
	return &latencyResult{
		offered: float64(rate), achieved: float64(sent) / elapsed.Seconds(), batches: len(lats),
		p50: lats[len(lats)/2], p99: lats[len(lats)*99/100], maxL: lats[len(lats)-1], trace: trace,
	}, nil
}

// leafIndexes looks up the leaf index of each batch's last record.
func (s *server) leafIndexes(ctx context.Context, results []batchResult) ([]uint64, error) {
	out := make([]uint64, len(results))
	work := make(chan int)
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/v1/proof/"+results[i].lastID, nil)
				req.Header.Set("Authorization", "Bearer "+s.queryTok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errc <- err
					return
				}
				var b struct {
					LeafIndex uint64 `json:"leaf_index"`
				}
				err = json.NewDecoder(resp.Body).Decode(&b)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					errc <- fmt.Errorf("proof of %s: %d %v", results[i].lastID, resp.StatusCode, err)
					return
				}
				out[i] = b.LeafIndex
			}
		}()
	}
	for i := range results {
		select {
		case work <- i:
		case err := <-errc:
			close(work)
			wg.Wait()
			return nil, err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	return out, nil
}

func renderReport(c config, args []string, avg int, js, ts, pl, acked float64, lats []*latencyResult, cpu cpuPerRecord) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## Ingest → signed log (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Command: `go run ./bench/ingest %s`  \n", strings.Join(args, " "))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s; %d records of %d bytes (canonical JSON)\n\n", host, runtime.NumCPU(), runtime.Version(), c.records, avg)
	b.WriteString("| path | records/s |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| raw JetStream async publish (embedded, file store, msg-id dedup) | %.0f |\n", js)
	fmt.Fprintf(&b, "| raw tessera append (POSIX, batch 4096/20ms) | %.0f |\n", ts)
	fmt.Fprintf(&b, "| proofline ingest alone (HTTP POST → 202, stored in JetStream) | %.0f |\n", acked)
	fmt.Fprintf(&b, "| proofline end to end (HTTP POST → in a published checkpoint) | %.0f |\n\n", pl)
	b.WriteString("| ratio | measured | target |\n| --- | ---: | ---: |\n")
	fmt.Fprintf(&b, "| proofline end to end / raw JetStream | %.0f%% | ≥ 25%% |\n", 100*pl/js)
	fmt.Fprintf(&b, "| proofline ingest (202) / raw JetStream | %.0f%% | (context) |\n", 100*acked/js)
	fmt.Fprintf(&b, "| proofline end to end / raw tessera | %.0f%% | ≥ 50%% |\n\n", 100*pl/ts)
	b.WriteString("CPU time per record in the same runs (user + system, all threads; steadier than rates on a shared machine):\n\n")
	b.WriteString("| raw JetStream | raw tessera | proofline server, end to end | HTTP load generator |\n| ---: | ---: | ---: | ---: |\n")
	fmt.Fprintf(&b, "| %.1f µs | %.1f µs | %.1f µs | %.1f µs |\n\n", cpu.js, cpu.ts, cpu.server, cpu.loadgen)
	fmt.Fprintf(&b, "proofline's server spends %.1f× the CPU of the two raw engines together per record (%.1f µs over their %.1f µs).\n\n", cpu.server/(cpu.js+cpu.ts), cpu.server-cpu.js-cpu.ts, cpu.js+cpu.ts)
	fmt.Fprintf(&b, "Latency from 202 to inclusion in a published checkpoint, offered for %s each in 10 ms batches:\n\n", c.duration)
	b.WriteString("| offered | achieved | batches × records | p50 | p99 | max | target p99 |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, lat := range lats {
		fmt.Fprintf(&b, "| %.0f/s | %.0f/s | %d × %d | %s | %s | %s | < 1s |\n", lat.offered, lat.achieved, lat.batches, max(1, int(lat.offered)/100),
			lat.p50.Round(time.Millisecond), lat.p99.Round(time.Millisecond), lat.maxL.Round(time.Millisecond))
	}
	if bin := os.Getenv("PROOFLINE_BENCH_BIN"); bin != "" {
		fmt.Fprintf(&b, "\nServer binary: %s\n", bin)
	}
	return b.String()
}
