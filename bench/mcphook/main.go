// Command mcphook measures what proofline's MCP hook adds to a tool call:
// the same no-op tool on servers with and without the hook, called
// alternately over the SDK's in-memory transport, so all see the same
// machine at the same moments. The hook's own time per call (policy,
// limits, span and record, the hand-over to the sealer) is timed by
// middlewares around and inside it; a pass-through middleware timed the
// same way is the control. The sealer and the outbox work after the call
// returns, on the same CPUs. A second hooked server has NATS stopped
// under it, to show a call never waits on NATS.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/proofline/proofline/ingest/mcphook"
	"github.com/proofline/proofline/ingest/mcphook/policy"
	"github.com/proofline/proofline/ingest/outbox"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/bus"
)

const benchPolicy = `
rules:
  - name: no-deletes-for-agents
    when: actor.type == "agent" && tool.name == "delete_ticket"
    decision: deny
  - name: payments-need-scope
    when: tool.name == "transfer_funds" && !("payments:write" in scopes)
    decision: deny
  - name: mask-email
    when: tool.name == "send_email"
    decision: redact
    redact: {paths: [to]}
`

func main() {
	n := flag.Int("calls", 20000, "calls per server")
	out := flag.String("out", "", "also write the Markdown report to this file")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured calls to this file")
	timeout := flag.Duration("timeout", 0, "the hook's call timeout (Limits.DefaultTimeout; 0: none): with one, the tool runs on a goroutine of its own so the call can be answered when it is over")
	traceOut := flag.String("trace", "", "write an execution trace of the measured calls to this file, with the hook's own time as regions (\"hook before the tool\", \"hook after the tool\")")
	flag.Parse()
	if *cpuprofile != "" {
		startWriting(*cpuprofile, pprof.StartCPUProfile)
		defer pprof.StopCPUProfile()
	}
	if *traceOut != "" {
		startWriting(*traceOut, trace.Start)
		defer trace.Stop()
	}
	if err := run(context.Background(), *n, *timeout, *out); err != nil {
		trace.Stop()
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// startWriting creates path and starts start (a CPU profile, an
// execution trace) writing to it; the bench stops on an error.
func startWriting(path string, start func(io.Writer) error) {
	f, err := os.Create(path)
	if err == nil {
		err = start(f)
	}
	if err != nil {
		trace.Stop()
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type target struct {
	name string
	// half is the half of the run it is measured in: 0 with NATS up, 1
	// with NATS down.
	half    int
	session *mcp.ClientSession
	lat     []time.Duration
	allocs  uint64
	// self is the time each call spent in the hook itself: around it
	// minus inside it (timing middlewares on both sides), which leaves out
	// the transport's noise.
	self *selfTimer
}

// selfTimer measures a middleware's own time per call from two timing
// middlewares, one outside it and one inside.
type selfTimer struct {
	mu      sync.Mutex
	inner   time.Duration
	samples []time.Duration
	// pre and post are the execution-trace regions of the hook's own
	// time before and after the tool (with -trace): a slow sample can
	// then be matched with what the goroutine and the runtime did in it.
	// A region starts and ends on one goroutine, so there are none when
	// a call timeout runs the tool on another.
	regions   bool
	pre, post *trace.Region
}

func (st *selfTimer) outer() mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method != "tools/call" {
				return next(ctx, method, req)
			}
			t0 := time.Now()
			if st.regions {
				st.pre = trace.StartRegion(ctx, "hook before the tool")
			}
			res, err := next(ctx, method, req)
			if st.post != nil {
				st.post.End()
				st.post = nil
			}
			total := time.Since(t0)
			st.mu.Lock()
			st.samples = append(st.samples, total-st.inner)
			st.mu.Unlock()
			return res, err
		}
	}
}

func (st *selfTimer) innerMW() mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if st.pre != nil {
				st.pre.End()
				st.pre = nil
			}
			t0 := time.Now()
			res, err := next(ctx, method, req)
			d := time.Since(t0)
			if st.regions && method == "tools/call" {
				st.post = trace.StartRegion(ctx, "hook after the tool")
			}
			st.mu.Lock()
			st.inner = d
			st.mu.Unlock()
			return res, err
		}
	}
}

func run(ctx context.Context, n int, timeout time.Duration, out string) error {
	dir, err := os.MkdirTemp("", "proofline-bench-mcphook")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)

	// NATS with JetStream, on a port so that it can be stopped.
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "nats"), NoSigs: true, NoLog: true})
	if err != nil {
		return err
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats not ready")
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)
	b, err := bus.Open(ctx, bus.Config{URL: url, Logger: quiet})
	if err != nil {
		return err
	}
	defer b.Close()
	pol, err := policy.Parse([]byte(benchPolicy))
	if err != nil {
		return err
	}
	budgetStore, err := mcphook.OpenBudgetStore(ctx, b.JS)
	if err != nil {
		return err
	}
	hooked := func(name string) (*mcphook.Hook, *outbox.Outbox, error) {
		ob, err := outbox.Open(outbox.Config{Publisher: publish.NewPublisher(b.JS), SpoolPath: filepath.Join(dir, name+"-spool"),
			SpoolMaxBytes: 1 << 30, QueueSize: 1 << 16, Logger: quiet})
		if err != nil {
			return nil, nil, err
		}
		// Guardrails on as a production server has them: a circuit
		// breaker on the tool's service (both trip rules), and a call
		// budget and a per-caller cost budget shared through the
		// JetStream budget bucket, checked and counted on every call.
		h, err := mcphook.New(mcphook.Config{Outbox: ob, Policy: pol, Server: mcphook.ServerInfo{Name: "bench"},
			Tools:  map[string]mcphook.ToolConfig{"noop": {Group: "bench", Service: "bench-api", Cost: 0.001, Currency: "USD"}},
			Limits: mcphook.Limits{Breaker: &mcphook.BreakerConfig{ConsecutiveFailures: 5, FailureRate: 0.5}, DefaultTimeout: timeout},
			Budgets: []mcphook.Budget{
				{Name: name + "-calls", Group: "bench", Period: mcphook.PeriodDay, MaxCalls: 1 << 40},
				{Name: name + "-cost", Tool: "noop", PerPrincipal: true, Period: mcphook.PeriodMonth, MaxCost: 1e9, Currency: "USD"},
			},
			BudgetStore: budgetStore, Logger: quiet})
		return h, ob, err
	}
	connect := func(mw mcp.Middleware, timer *selfTimer) (*mcp.ClientSession, error) {
		srv := mcp.NewServer(&mcp.Implementation{Name: "bench"}, nil)
		srv.AddTool(&mcp.Tool{Name: "noop", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
		if mw != nil {
			// Calls are sequential, so one "inner" slot suffices.
			srv.AddReceivingMiddleware(timer.outer(), mw, timer.innerMW())
		}
		st, ct := mcp.NewInMemoryTransports()
		if _, err := srv.Connect(ctx, st, nil); err != nil {
			return nil, err
		}
		return mcp.NewClient(&mcp.Implementation{Name: "agent-7"}, nil).Connect(ctx, ct, nil)
	}
	plain, err := connect(nil, nil)
	if err != nil {
		return err
	}
	h1, ob1, err := hooked("up")
	if err != nil {
		return err
	}
	// The control: the same timing middlewares around a middleware that
	// only passes the call on. Its "self time" is the floor of what this
	// measurement can see on this machine (two time.Now calls, the
	// scheduler, the GC the SDK's own allocations cause).
	regions := trace.IsEnabled() && timeout == 0
	st0, st1, st2 := &selfTimer{regions: regions}, &selfTimer{regions: regions}, &selfTimer{regions: regions}
	passThrough := func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			return next(ctx, method, req)
		}
	}
	control, err := connect(passThrough, st0)
	if err != nil {
		return err
	}
	withHook, err := connect(h1.ServerMiddleware(), st1)
	if err != nil {
		return err
	}
	h2, ob2, err := hooked("down")
	if err != nil {
		return err
	}
	natsDown, err := connect(h2.ServerMiddleware(), st2)
	if err != nil {
		return err
	}
	// The first half of the run has NATS up, the second has it down; the
	// unhooked server is measured in both, so each hooked figure is
	// compared with a baseline taken at the same moments.
	targets := []*target{{name: "no hook", session: plain}, {name: "control (pass-through middleware)", session: control, self: st0},
		{name: "hook, NATS up", session: withHook, self: st1},
		{name: "no hook (second half)", session: plain, half: 1}, {name: "hook, NATS down", session: natsDown, self: st2, half: 1}}
	params := &mcp.CallToolParams{Name: "noop", Arguments: map[string]any{"query": "printer", "limit": 5}}

	// Warm up, then stop NATS for the third target's measurements: its
	// hook's outbox then spools everything.
	for _, tg := range targets {
		for range 500 {
			if _, err := tg.session.CallTool(ctx, params); err != nil {
				return err
			}
		}
	}
	// Allocations are counted in passes of their own: ReadMemStats stops
	// the world, which has no place between timed calls.
	allocs := func(tg *target) error {
		const calls = 2000
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		for range calls {
			if _, err := tg.session.CallTool(ctx, params); err != nil {
				return err
			}
		}
		runtime.ReadMemStats(&ms)
		tg.allocs = (ms.Mallocs - before) / calls
		return nil
	}
	for _, tg := range targets[:3] {
		if err := allocs(tg); err != nil {
			return err
		}
	}
	st0.samples, st1.samples, st2.samples = nil, nil, nil
	for i := range 2 * n {
		if i == n {
			ns.Shutdown() // halfway: NATS goes away for good
		}
		for _, tg := range targets {
			if tg.half != i/n {
				continue
			}
			t0 := time.Now()
			if _, err := tg.session.CallTool(ctx, params); err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			tg.lat = append(tg.lat, time.Since(t0))
		}
	}
	for _, tg := range targets[3:] { // NATS is down by now
		if err := allocs(tg); err != nil {
			return err
		}
	}
	report := render(n, timeout, targets, ob1.Stats(), ob2.Stats())
	fmt.Print(report)
	if out != "" {
		return os.WriteFile(out, []byte(report), 0o644)
	}
	return nil
}

func pct(l []time.Duration, p float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func render(n int, timeout time.Duration, targets []*target, up, down outbox.Stats) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## MCP hook overhead (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	cmdline := fmt.Sprintf("go run ./bench/mcphook -calls %d", n)
	if timeout > 0 {
		cmdline += " -timeout " + timeout.String()
	}
	fmt.Fprintf(&b, "Command: `%s`  \nMachine: %s, %d CPUs, %s; a no-op tool over the SDK's in-memory transport, servers called alternately\n\n", cmdline, host, runtime.NumCPU(), runtime.Version())
	b.WriteString("| server | p50 | p99 | allocations per call |\n| --- | ---: | ---: | ---: |\n")
	for _, tg := range targets {
		fmt.Fprintf(&b, "| %s | %s | %s | %d |\n", tg.name, pct(tg.lat, 0.5).Round(100*time.Nanosecond), pct(tg.lat, 0.99).Round(100*time.Nanosecond), tg.allocs)
	}
	base, hook, base2, down2 := targets[0], targets[2], targets[3], targets[4]
	b.WriteString("\nTime spent in the hook itself per call (timing middlewares around and inside it; target < 50 µs p99):\n\n| hook | p50 | p99 |\n| --- | ---: | ---: |\n")
	for _, tg := range []*target{targets[1], hook, down2} {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", tg.name, pct(tg.self.samples, 0.5).Round(100*time.Nanosecond), pct(tg.self.samples, 0.99).Round(100*time.Nanosecond))
	}
	diff := func(tg *target, p float64) time.Duration {
		b := base
		if tg.half == 1 {
			b = base2
		}
		return (pct(tg.lat, p) - pct(b.lat, p)).Round(100 * time.Nanosecond)
	}
	fmt.Fprintf(&b, "\nEnd-to-end difference to the unhooked server (transport noise included; the sealer and the outbox work on the same two CPUs after the call returns): p50 %s, p99 %s; with NATS down: p50 %s, p99 %s. "+
		"The control, which does nothing, differs by p50 %s, p99 %s: the noise of an end-to-end p99 difference in this run.  \n",
		diff(hook, 0.5), diff(hook, 0.99), diff(down2, 0.5), diff(down2, 0.99), diff(targets[1], 0.5), diff(targets[1], 0.99))
	fmt.Fprintf(&b, "Outbox with NATS up: %d published, %d spooled; with NATS down: %d published, %d spooled, %d dropped (records of the calls made while it was down wait in the spool).\n",
		up.Published, up.Spooled, down.Published, down.Spooled, down.Dropped)
	return b.String()
}
