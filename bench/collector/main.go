// Command collector benchmarks the proofline Collector exporter against
// the Collector's own nop exporter, in one run on the same input: pdata
// traces of MCP tool-call spans built in memory and handed to each
// exporter's ConsumeTraces, as a pipeline would. The nop exporter is the
// ceiling of any exporter (the Collector's per-call overhead and nothing
// else); the proofline exporter maps every span to a call record,
// validates and canonicalises it, publishes it to a real JetStream (the
// embedded server with proofline's own stream definition, over loopback
// TCP) and waits for every acknowledgement.
//
// The figure to compare across runs is the ratio; the absolute numbers
// are context on a shared machine.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/exporter/nopexporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/proofline/proofline/ingest/otelexporter"
	"github.com/proofline/proofline/internal/bus"
)

type config struct {
	spans     int
	batch     int
	unrelated float64
	out       string
	profile   string
}

func main() {
	var c config
	flag.IntVar(&c.spans, "spans", 100_000, "spans consumed by each exporter")
	flag.IntVar(&c.batch, "batch", 1000, "spans per ConsumeTraces call (the batch processor's output)")
	flag.Float64Var(&c.unrelated, "unrelated", 0, "share of spans that are not tool calls (0..1)")
	flag.StringVar(&c.out, "out", "", "also write the Markdown report to this file")
	flag.StringVar(&c.profile, "cpuprofile", "", "write a CPU profile of the proofline exporter runs to this file")
	flag.Parse()
	if c.spans <= 0 || c.batch <= 0 || c.unrelated < 0 || c.unrelated > 1 {
		fmt.Fprintln(os.Stderr, "bench: -spans and -batch must be positive, -unrelated within 0..1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type results struct {
	nop, marshal, mapping, sync, queued float64
	stored                              uint64
}

func run(ctx context.Context, c config, args []string) error {
	dir, err := os.MkdirTemp("", "proofline-bench-collector")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	b, err := bus.Open(ctx, bus.Config{DataDir: dir, Listen: addr})
	if err != nil {
		return fmt.Errorf("embedded jetstream: %w", err)
	}
	defer b.Close()

	var r results
	// Each run gets spans of its own (fresh trace ids): a span the stream
	// has already stored is a duplicate, which is cheaper and not what
	// is measured.
	if r.nop, err = timeNop(ctx, makeTraces(c)); err != nil {
		return fmt.Errorf("nop exporter: %w", err)
	}
	fmt.Fprintf(os.Stderr, "nop exporter: %.0f spans/s\n", r.nop)
	if r.marshal, err = timeMarshal(makeTraces(c)); err != nil {
		return fmt.Errorf("otlp marshal: %w", err)
	}
	fmt.Fprintf(os.Stderr, "OTLP protobuf marshal: %.0f spans/s\n", r.marshal)
	r.mapping = timeMapping(makeTraces(c))
	fmt.Fprintf(os.Stderr, "mapping only: %.0f spans/s\n", r.mapping)
	if c.profile != "" {
		f, err := os.Create(c.profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if r.sync, err = timeProofline(ctx, b.ClientURL(), false, makeTraces(c)); err != nil {
		return fmt.Errorf("proofline exporter: %w", err)
	}
	fmt.Fprintf(os.Stderr, "proofline exporter (no queue): %.0f spans/s\n", r.sync)
	if r.queued, err = timeProofline(ctx, b.ClientURL(), true, makeTraces(c)); err != nil {
		return fmt.Errorf("proofline exporter with queue: %w", err)
	}
	fmt.Fprintf(os.Stderr, "proofline exporter (sending queue): %.0f spans/s\n", r.queued)

	// Every tool-call span of both proofline runs is in the stream, once.
	s, err := b.JS.Stream(ctx, bus.StreamName)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	r.stored = info.State.Msgs
	if want := 2 * uint64(toolCalls(c)); r.stored != want {
		return fmt.Errorf("stream holds %d records, want %d", r.stored, want)
	}

	report := render(c, args, r)
	fmt.Print(report)
	if c.out != "" {
		return os.WriteFile(c.out, []byte(report), 0o644)
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func toolCalls(c config) int {
	n := 0
	for i := 0; i < c.spans; i++ {
		if !unrelated(c, i) {
			n++
		}
	}
	return n
}

// unrelated spreads the unrelated spans evenly through the input.
func unrelated(c config, i int) bool {
	return int(float64(i+1)*c.unrelated) > int(float64(i)*c.unrelated)
}

// makeTraces builds the input: batches of c.batch spans, each batch one
// resource (an agent service) with MCP tool-call client spans carrying
// the attributes a gateway or MCP SDK sets, and a share of unrelated
// HTTP spans. Trace ids are random per call, span ids sequential.
func makeTraces(c config) []ptrace.Traces {
	var run [8]byte
	_, _ = rand.Read(run[:])
	tools := []string{"search_tickets", "create_ticket", "query_db", "send_email", "read_file", "web_fetch"}
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var out []ptrace.Traces
	for i := 0; i < c.spans; i += c.batch {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("agent-svc-%d", (i/c.batch)%8))
		rs.Resource().Attributes().PutStr("cloud.region", "eu-west-1")
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		for j := i; j < min(i+c.batch, c.spans); j++ {
			sp := spans.AppendEmpty()
			var tid pcommon.TraceID
			copy(tid[:8], run[:])
			tid[8], tid[9], tid[10], tid[11] = byte(j>>24), byte(j>>16), byte(j>>8), byte(j)
			sp.SetTraceID(tid)
			sp.SetSpanID(pcommon.SpanID{1, 0, 0, 0, byte(j >> 24), byte(j >> 16), byte(j >> 8), byte(j)})
			ts := start.Add(time.Duration(j) * time.Millisecond)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(ts))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(ts.Add(time.Duration(5+j%300) * time.Millisecond)))
			at := sp.Attributes()
			if unrelated(c, j) {
				sp.SetName("GET /api/v1/items")
				sp.SetKind(ptrace.SpanKindServer)
				at.PutStr("http.request.method", "GET")
				at.PutStr("url.path", "/api/v1/items")
				at.PutInt("http.response.status_code", 200)
				continue
			}
			tool := tools[j%len(tools)]
			sp.SetName("tools/call " + tool)
			sp.SetKind(ptrace.SpanKindClient)
			if j%10 == 9 {
				sp.Status().SetCode(ptrace.StatusCodeError)
				sp.Status().SetMessage("tool returned an error")
				at.PutStr("error.type", "tool_error")
			}
			at.PutStr("gen_ai.operation.name", "execute_tool")
			at.PutStr("gen_ai.tool.name", tool)
			at.PutStr("gen_ai.tool.call.id", fmt.Sprintf("call_%d", j))
			at.PutStr("mcp.method.name", "tools/call")
			at.PutStr("mcp.session.id", fmt.Sprintf("sess-%d", j/100))
			at.PutInt("jsonrpc.request.id", int64(j))
			at.PutStr("network.transport", "tcp")
			at.PutStr("actor.id", fmt.Sprintf("agent-%d", j%50))
			at.PutStr("actor.type", "agent")
			at.PutStr("actor.on_behalf_of", fmt.Sprintf("user-%d@example.com", j%500))
			grants := at.PutEmptySlice("scope.grants")
			grants.AppendEmpty().SetStr("tickets:read")
			grants.AppendEmpty().SetStr("tickets:write")
			at.PutStr("policy.decision", "allow")
			at.PutStr("policy.rule", "default")
			at.PutStr("tool.server", "mcp-"+tool)
			at.PutStr("tool.group", fmt.Sprintf("group-%d", j%4))
			at.PutStr("tool.version", "1.2.3")
			at.PutStr("workflow.id", fmt.Sprintf("wf-%d", j%20))
			at.PutStr("plan.id", fmt.Sprintf("plan-%d", j/7))
			at.PutStr("proofline.args_sha256", fmt.Sprintf("%064x", j))
			at.PutStr("proofline.result_sha256", fmt.Sprintf("%064x", j*7+1))
			at.PutDouble("cost.amount", float64(j%1000)/10000)
			at.PutStr("cost.currency", "USD")
			at.PutInt("gen_ai.usage.input_tokens", int64(j%4000))
			at.PutInt("gen_ai.usage.output_tokens", int64(j%900))
		}
		out = append(out, td)
	}
	return out
}

func spanCount(tds []ptrace.Traces) int {
	n := 0
	for _, td := range tds {
		n += td.SpanCount()
	}
	return n
}

func settings(f exporter.Factory) exporter.Settings {
	return exportertest.NewNopSettings(f.Type())
}

// consume feeds every batch to exp and returns spans/s, including
// shutdown (which drains a sending queue, if any).
func consume(ctx context.Context, exp exporter.Traces, tds []ptrace.Traces) (float64, error) {
	if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
		return 0, err
	}
	runtime.GC()
	begin := time.Now()
	for _, td := range tds {
		if err := exp.ConsumeTraces(ctx, td); err != nil {
			_ = exp.Shutdown(context.Background())
			return 0, err
		}
	}
	if err := exp.Shutdown(ctx); err != nil {
		return 0, err
	}
	return float64(spanCount(tds)) / time.Since(begin).Seconds(), nil
}

// timeNop feeds the input to the nop exporter in repeated passes for at
// least a second: one pass takes microseconds, too short to time.
func timeNop(ctx context.Context, tds []ptrace.Traces) (float64, error) {
	f := nopexporter.NewFactory()
	exp, err := f.CreateTraces(ctx, settings(f), f.CreateDefaultConfig())
	if err != nil {
		return 0, err
	}
	if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
		return 0, err
	}
	defer exp.Shutdown(context.Background())
	runtime.GC()
	n, per := 0, spanCount(tds)
	begin := time.Now()
	for time.Since(begin) < time.Second {
		for _, td := range tds {
			if err := exp.ConsumeTraces(ctx, td); err != nil {
				return 0, err
			}
		}
		n += per
	}
	return float64(n) / time.Since(begin).Seconds(), nil
}

// timeMarshal is the least per-span work any network exporter does: the
// OTLP protobuf encoding of the batch (what the otlp exporter sends).
func timeMarshal(tds []ptrace.Traces) (float64, error) {
	var m ptrace.ProtoMarshaler
	runtime.GC()
	begin := time.Now()
	for _, td := range tds {
		if _, err := m.MarshalTraces(td); err != nil {
			return 0, err
		}
	}
	return float64(spanCount(tds)) / time.Since(begin).Seconds(), nil
}

// timeMapping is the exporter's per-span work without NATS: attributes
// to a record, validation, canonical bytes.
func timeMapping(tds []ptrace.Traces) float64 {
	cfg := otelexporter.NewFactory().CreateDefaultConfig().(*otelexporter.Config)
	m := otelexporter.NewMapper(cfg)
	runtime.GC()
	begin := time.Now()
	for _, td := range tds {
		_ = m.Map(td)
	}
	return float64(spanCount(tds)) / time.Since(begin).Seconds()
}

// timeProofline runs the exporter through its factory, against the
// embedded JetStream. Without the queue, ConsumeTraces returns only after
// JetStream acknowledged every record of the batch, one batch at a time;
// with the default sending queue, batches are published by its consumers
// concurrently and the time runs until Shutdown has drained the queue.
func timeProofline(ctx context.Context, url string, queue bool, tds []ptrace.Traces) (float64, error) {
	f := otelexporter.NewFactory()
	cfg := f.CreateDefaultConfig().(*otelexporter.Config)
	cfg.NATSURL = url
	cfg.Principal = "bench-collector"
	if !queue {
		cfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	} else if q := cfg.QueueConfig.Get(); q != nil {
		// Hold the whole input: the measurement is the exporter, not
		// the queue refusing work.
		q.QueueSize = int64(len(tds) + 1)
		q.BlockOnOverflow = true
	}
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	exp, err := f.CreateTraces(ctx, settings(f), cfg)
	if err != nil {
		return 0, err
	}
	return consume(ctx, exp, tds)
}

func render(c config, args []string, r results) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## Collector exporter (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Command: `go run ./bench/collector %s`  \n", strings.Join(args, " "))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s; %d spans per exporter (%d tool calls, %.0f%% unrelated) in batches of %d, pdata built in memory\n\n",
		host, runtime.NumCPU(), runtime.Version(), c.spans, toolCalls(c), 100*c.unrelated, c.batch)
	b.WriteString("| path | spans/s |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| Collector nop exporter (`nopexporter`, ConsumeTraces) | %.0f |\n", r.nop)
	fmt.Fprintf(&b, "| OTLP protobuf marshal of the same pdata (`ptrace.ProtoMarshaler`, context) | %.0f |\n", r.marshal)
	fmt.Fprintf(&b, "| proofline mapping only (`Mapper.Map`: span → validated canonical record, no NATS) | %.0f |\n", r.mapping)
	fmt.Fprintf(&b, "| proofline exporter, no queue (ConsumeTraces returns after JetStream acked every record) | %.0f |\n", r.sync)
	fmt.Fprintf(&b, "| proofline exporter, default sending queue (%d consumers; until Shutdown, all acked) | %.0f |\n\n",
		otelexporterQueueConsumers(), r.queued)
	b.WriteString("| ratio | measured |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| proofline exporter (no queue) / nop exporter | %.3g%% (1 : %.0f) |\n", 100*r.sync/r.nop, r.nop/r.sync)
	fmt.Fprintf(&b, "| proofline exporter (sending queue) / nop exporter | %.3g%% (1 : %.0f) |\n", 100*r.queued/r.nop, r.nop/r.queued)
	fmt.Fprintf(&b, "| proofline exporter (no queue) / OTLP marshal | %.1f%% |\n", 100*r.sync/r.marshal)
	fmt.Fprintf(&b, "| proofline exporter (no queue) / mapping only | %.0f%% |\n\n", 100*r.sync/r.mapping)
	fmt.Fprintf(&b, "The stream held %d records afterwards: every tool-call span of both proofline runs, once.\n\n", r.stored)
	b.WriteString("The nop exporter does no work per span (one call per batch returns at once), so its rate is the\n" +
		"Collector's per-call ceiling and the ratio to it only says the proofline exporter is bound by\n" +
		"per-span work: mapping, validating (`schemas.Decode`) and canonicalising each record, then\n" +
		"JetStream storing it (the embedded server shares the same CPUs). The OTLP marshal row is the\n" +
		"per-span floor of any exporter that sends spans over the network.\n")
	return b.String()
}

func otelexporterQueueConsumers() int {
	cfg := otelexporter.NewFactory().CreateDefaultConfig().(*otelexporter.Config)
	if q := cfg.QueueConfig.Get(); q != nil {
		return q.NumConsumers
	}
	return 0
}
