package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/proofline/proofline/schemas"
)

// collectorProc is one running proofline-collector process.
type collectorProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// buildCollector builds cmd/proofline-collector (with -race when the
// e2e server is built with it).
func buildCollector(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "proofline-collector")
	args := []string{"build", "-o", bin}
	if os.Getenv("PROOFLINE_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/proofline-collector")...)
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("building proofline-collector: %v\n%s", err, out)
	}
	return bin
}

// startCollector runs the collector with the given configs (merged in
// order, as the Collector merges repeated --config flags) and waits until
// its OTLP receivers accept connections: receivers start last, so the
// exporter is connected by then.
func startCollector(t *testing.T, bin string, listens []string, configs ...string) *collectorProc {
	t.Helper()
	c := &collectorProc{t: t, logPath: filepath.Join(t.TempDir(), "collector.log"), done: make(chan struct{})}
	var args []string
	for _, cfg := range configs {
		args = append(args, "--config", cfg)
	}
	c.cmd = exec.Command(bin, args...)
	// The shipped config's persistent queue lives under
	// PROOFLINE_COLLECTOR_STORAGE (default: the working directory); a
	// test that restarts the collector names its directory in a config.
	c.cmd.Env = append(os.Environ(), "PROOFLINE_COLLECTOR_STORAGE="+filepath.Join(t.TempDir(), "collector-storage"))
	logf, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); logf.Close(); close(c.done) }()
	t.Cleanup(c.stop)
	deadline := time.Now().Add(60 * time.Second)
	for _, addr := range listens {
		for {
			select {
			case <-c.done:
				t.Fatalf("proofline-collector exited during start-up:\n%s", c.logs())
			default:
			}
			if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("proofline-collector not listening on %s after 60s:\n%s", addr, c.logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

func (c *collectorProc) logs() string {
	b, _ := os.ReadFile(c.logPath)
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	return string(b)
}

func (c *collectorProc) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		c.t.Errorf("proofline-collector did not stop on SIGTERM within 20s:\n%s", c.logs())
	}
}

// metric sums the samples of a Prometheus metric family whose labels
// include label (e.g. `outcome="stored"`), from the collector's own
// telemetry endpoint.
func (c *collectorProc) metric(url, family, label string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, family) || !strings.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// waitCollectorProof is waitProof with the collector's log on failure:
// a record that never arrives is usually the collector's story.
func waitCollectorProof(t *testing.T, s *server, c *collectorProc, tok, id string) []byte {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := s.get(tok, "/v1/proof/"+id)
		if code == http.StatusOK {
			return body
		}
		if code != http.StatusNotFound && code != http.StatusTooEarly {
			t.Fatalf("proof %s: %d %s", id, code, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("record %s not provable after 60s (last %d %s)\ncollector:\n%s\nserver:\n%s", id, code, body, c.logs(), s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func otelRecordID(sc trace.SpanContext) string {
	return "otel-" + sc.TraceID().String() + "-" + sc.SpanID().String()
}

// TestCollectorSpansToVerifiedProofs runs the OpenTelemetry path end to
// end with real processes: `proofline serve` exposing its embedded NATS,
// the proofline-collector binary with the shipped pipeline
// (collector-config/proofline.yaml) pointed at it, and an application
// tracing with the OpenTelemetry Go SDK. An MCP tool-call span becomes a
// record whose proof bundle verifies offline; the agent span around it
// (GenAI attributes, not a tool call) becomes nothing; the same span
// exported again (over the other OTLP protocol) stays one leaf.
func TestCollectorSpansToVerifiedProofs(t *testing.T) {
	collector := buildCollector(t)
	natsAddr := freeAddr(t)
	data := t.TempDir()
	s := startServer(t, data, "--nats-listen", natsAddr)
	q := s.token("auditor", "query", "1h")
	keyPath := filepath.Join(data, "keys", "log.pub")

	// A server that protects its exposed NATS with a token writes it to
	// DATA/keys/nats.token before it is ready; the collector presents it.
	auth := ""
	if tokenFile := filepath.Join(data, "keys", "nats.token"); fileExists(tokenFile) {
		auth = "\n    token_file: " + tokenFile
	}
	grpcAddr, httpAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	_, metricsPort, _ := net.SplitHostPort(metricsAddr)
	override := filepath.Join(t.TempDir(), "e2e.yaml")
	if err := os.WriteFile(override, []byte(fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
exporters:
  proofline:
    nats_url: nats://%s%s
    principal: collector-e2e
    sending_queue:
      batch:
        flush_timeout: 20ms
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 1s
service:
  telemetry:
    logs:
      level: debug
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %s
`, grpcAddr, httpAddr, natsAddr, auth, metricsPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCollector(t, collector, []string{grpcAddr, httpAddr}, filepath.Join("..", "collector-config", "proofline.yaml"), override)

	// The application: an agent span (GenAI, not a tool call) around two
	// MCP tool calls, one of which times out.
	ctx := ctxT(t, 2*time.Minute)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "support-agent"))))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("e2e/collector")
	rawArgs := `{"query":"reset password for alice@example.com"}`
	argsSum := sha256.Sum256([]byte(rawArgs))
	toolCall := func(ctx context.Context, tool string, extra ...attribute.KeyValue) trace.Span {
		_, span := tracer.Start(ctx, "tools/call "+tool, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(append([]attribute.KeyValue{
			attribute.String("gen_ai.operation.name", "execute_tool"),
			attribute.String("gen_ai.tool.name", tool),
			attribute.String("mcp.method.name", "tools/call"),
			attribute.String("mcp.session.id", "sess-e2e"),
			attribute.String("network.transport", "tcp"),
			attribute.String("actor.id", "agent-7"),
			attribute.String("actor.type", "agent"),
			attribute.String("actor.on_behalf_of", "alice@example.com"),
			attribute.StringSlice("scope.grants", []string{"tickets:read", "tickets:write"}),
			attribute.String("policy.decision", "allow"),
			attribute.String("policy.rule", "default-allow"),
			attribute.String("tool.group", "ticketing"),
			attribute.String("tool.server", "jira-mcp"),
			attribute.String("workflow.id", "wf-e2e"),
			attribute.String("plan.id", "plan-e2e"),
			attribute.Float64("cost.amount", 0.002),
			attribute.String("cost.currency", "USD"),
			attribute.Int("gen_ai.usage.input_tokens", 12),
		}, extra...)...))
		return span
	}
	agentCtx, agent := tracer.Start(ctx, "invoke_agent support", trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "invoke_agent"), attribute.String("gen_ai.agent.id", "agent-7"),
		attribute.String("actor.id", "agent-7")))
	search := toolCall(agentCtx, "search_tickets",
		attribute.Int("jsonrpc.request.id", 7),
		attribute.String("gen_ai.tool.call.arguments", rawArgs),
		attribute.String("proofline.result_sha256", strings.Repeat("cd", 32)))
	search.End()
	create := toolCall(agentCtx, "create_ticket", attribute.String("jsonrpc.request.id", "8"), attribute.String("error.type", "timeout"))
	create.SetStatus(codes.Error, "tool did not answer within 30s")
	create.End()
	agent.End()

	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer grpcExp.Shutdown(context.Background())
	if err := grpcExp.ExportSpans(ctx, recorder.Ended()); err != nil {
		t.Fatalf("OTLP/gRPC export: %v\n%s", err, c.logs())
	}

	// The tool call again, as a client retry would send it, over OTLP/HTTP,
	// together with a last tool call: once that one is provable, the
	// exporter has published the batch holding the repeat.
	_, last := tracer.Start(ctx, "tools/call list_projects", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("gen_ai.tool.name", "list_projects"), attribute.String("actor.id", "agent-7")))
	last.End()
	ended := recorder.Ended()
	resend := []sdktrace.ReadOnlySpan{ended[0], ended[len(ended)-1]}
	if resend[0].SpanContext().SpanID() != search.SpanContext().SpanID() || resend[1].SpanContext().SpanID() != last.SpanContext().SpanID() {
		t.Fatal("recorder returned spans in an unexpected order")
	}
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(httpAddr), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer httpExp.Shutdown(context.Background())
	if err := httpExp.ExportSpans(ctx, resend); err != nil {
		t.Fatalf("OTLP/HTTP export: %v\n%s", err, c.logs())
	}

	searchID, createID, lastID, agentID := otelRecordID(search.SpanContext()), otelRecordID(create.SpanContext()),
		otelRecordID(last.SpanContext()), otelRecordID(agent.SpanContext())

	// The tool call's proof bundle: the record the exporter built, signed
	// into the log, verifies offline with the log's key.
	raw := waitCollectorProof(t, s, c, q, searchID)
	if strings.Contains(string(raw), "reset password") {
		t.Fatalf("raw tool arguments reached the log: %s", raw)
	}
	var bundle struct {
		Record    schemas.CallRecord `json:"record"`
		LeafIndex uint64             `json:"leaf_index"`
	}
	if err := json.Unmarshal(raw, &bundle); err != nil {
		t.Fatal(err)
	}
	r := bundle.Record
	sc := search.SpanContext()
	switch {
	case r.RecordID != searchID, r.IngestedBy != "collector-e2e",
		r.Tool != (schemas.Tool{Name: "search_tickets", Server: "jira-mcp", Group: "ticketing"}),
		r.Actor != (schemas.Actor{ID: "agent-7", Type: "agent", OnBehalfOf: "alice@example.com"}),
		r.Trace == nil || r.Trace.TraceID != sc.TraceID().String() || r.Trace.SpanID != sc.SpanID().String() ||
			r.Trace.ParentSpanID != agent.SpanContext().SpanID().String(),
		r.MCP == nil || *r.MCP != (schemas.MCP{Method: "tools/call", SessionID: "sess-e2e", RequestID: "7", Transport: "http"}),
		r.Outcome != (schemas.Outcome{Status: "ok"}), r.Policy != (schemas.Policy{Decision: "allow", Rule: "default-allow"}),
		r.ArgsSHA256 != hex.EncodeToString(argsSum[:]), r.ResultSHA256 != strings.Repeat("cd", 32),
		r.Cost == nil || *r.Cost != (schemas.Cost{Amount: 0.002, Currency: "USD", TokensIn: 12}),
		r.WorkflowID != "wf-e2e", r.PlanID != "plan-e2e", strings.Join(r.ScopeGrants, ",") != "tickets:read,tickets:write",
		r.Attributes["service.name"] != "support-agent":
		t.Fatalf("record in the bundle: %+v (mcp %+v trace %+v cost %+v)", r, r.MCP, r.Trace, r.Cost)
	}
	if r.TSEnd.Sub(r.TSStart.Time) < 0 || r.TSStart.IsZero() {
		t.Fatalf("timestamps %s .. %s", r.TSStart, r.TSEnd)
	}
	bundlePath := filepath.Join(t.TempDir(), "bundle.json")
	if err := os.WriteFile(bundlePath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := cli(t, "verify", "--bundle", bundlePath, "--key", keyPath); code != 0 || !strings.HasPrefix(out, "OK") {
		t.Fatalf("verify --bundle: exit %d\n%s%s", code, out, errOut)
	}

	// The failed call is evidence too, with its outcome.
	var failed struct {
		Record schemas.CallRecord `json:"record"`
	}
	if err := json.Unmarshal(waitCollectorProof(t, s, c, q, createID), &failed); err != nil {
		t.Fatal(err)
	}
	if failed.Record.Outcome != (schemas.Outcome{Status: "timeout", ErrorCode: "timeout", ErrorMessage: "tool did not answer within 30s"}) {
		t.Fatalf("timed-out call: outcome %+v", failed.Record.Outcome)
	}
	waitCollectorProof(t, s, c, q, lastID)

	// The log at a checkpoint covering the last record: the three tool
	// calls once each, the agent span nowhere, nothing else.
	counts, size := logRecordIDs(t, s, q, keyPath)
	if size != 3 || len(counts) != 3 || counts[searchID] != 1 || counts[createID] != 1 || counts[lastID] != 1 {
		t.Fatalf("log of size %d holds %v; want exactly %s, %s and %s once each", size, counts, searchID, createID, lastID)
	}
	if code, body := s.get(q, "/v1/proof/"+agentID); code != http.StatusNotFound {
		t.Fatalf("agent span %s: proof answered %d %s, want 404", agentID, code, body)
	}

	// The collector's own telemetry says the same: one span ignored, the
	// repeat reported as a duplicate, three records stored.
	metricsURL := "http://" + metricsAddr + "/metrics"
	want := []struct {
		family, label string
		value         float64
	}{
		{"otelcol_exporter_proofline_records", `outcome="stored"`, 3},
		{"otelcol_exporter_proofline_records", `outcome="duplicate"`, 1},
		{"otelcol_exporter_proofline_spans_ignored", "", 1},
	}
	for _, w := range want {
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, err := c.metric(metricsURL, w.family, w.label)
			if err == nil && v == w.value {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("collector metric %s{%s} = %v (%v), want %v\n%s", w.family, w.label, v, err, w.value, c.logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// kill9 kills the collector the hard way: no shutdown, nothing flushed.
func (c *collectorProc) kill9() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// TestCollectorQueueSurvivesRestart: the shipped pipeline keeps the spans
// it accepted in its persistent sending queue (the file_storage extension)
// until JetStream stored them. With NATS down (proofline stopped), tool-call
// spans are sent over OTLP; the collector is restarted (SIGTERM), more
// spans are sent, it is killed (SIGKILL) and started again; proofline
// comes back: every span is exactly one leaf of the log, and its proof
// bundle verifies with `proofline verify`. With the in-memory queue the
// distribution had before, the restart dropped every queued span.
func TestCollectorQueueSurvivesRestart(t *testing.T) {
	collector := buildCollector(t)
	natsAddr := freeAddr(t)
	data := t.TempDir()
	s := startServer(t, data, "--nats-listen", natsAddr)
	q := s.token("auditor", "query", "1h")
	keyPath := filepath.Join(data, "keys", "log.pub")
	s.stop() // NATS down from here on, until s.start below

	auth := ""
	if tokenFile := filepath.Join(data, "keys", "nats.token"); fileExists(tokenFile) {
		auth = "\n    token_file: " + tokenFile
	}
	storage := filepath.Join(t.TempDir(), "collector-storage") // created by file_storage
	grpcAddr, httpAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	_, metricsPort, _ := net.SplitHostPort(metricsAddr)
	override := filepath.Join(t.TempDir(), "e2e.yaml")
	if err := os.WriteFile(override, []byte(fmt.Sprintf(`extensions:
  file_storage:
    directory: %s
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
exporters:
  proofline:
    nats_url: nats://%s%s
    principal: collector-restart
    timeout: 1s
    sending_queue:
      batch:
        flush_timeout: 20ms
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %s
`, storage, grpcAddr, httpAddr, natsAddr, auth, metricsPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	configs := []string{filepath.Join("..", "collector-config", "proofline.yaml"), override}
	listens := []string{grpcAddr, httpAddr}

	ctx := ctxT(t, 3*time.Minute)
	var want []string
	// send exports n tool-call spans over OTLP/gRPC; the collector
	// answers once they are in its queue.
	send := func(phase string, n int) {
		t.Helper()
		recorder := tracetest.NewSpanRecorder()
		tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "restart-agent")))).Tracer("e2e/collector-restart")
		for i := range n {
			_, span := tr.Start(ctx, fmt.Sprintf("tools/call %s-%d", phase, i), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
				attribute.String("gen_ai.operation.name", "execute_tool"),
				attribute.String("gen_ai.tool.name", "search_tickets"),
				attribute.String("mcp.method.name", "tools/call"),
				attribute.String("actor.id", "agent-7")))
			span.End()
			want = append(want, otelRecordID(span.SpanContext()))
		}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		defer exp.Shutdown(context.Background())
		if err := exp.ExportSpans(ctx, recorder.Ended()); err != nil {
			t.Fatalf("OTLP export (%s): %v", phase, err)
		}
	}

	c := startCollector(t, collector, listens, configs...)
	send("before-restart", 8)
	// SIGTERM: a normal restart. The Collector logs the batch it was
	// retrying as "Exporting failed. Dropping data" (interrupted due to
	// shutdown), but the persistent queue keeps it for the next start.
	c.stop()
	c = startCollector(t, collector, listens, configs...)
	send("before-kill", 7)
	c.kill9() // a crash
	c = startCollector(t, collector, listens, configs...)

	s.start() // NATS is back
	q = s.token("auditor", "query", "1h")
	for _, id := range want {
		raw := waitCollectorProof(t, s, c, q, id)
		bundlePath := filepath.Join(t.TempDir(), "bundle.json")
		if err := os.WriteFile(bundlePath, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := cli(t, "verify", "--bundle", bundlePath, "--key", keyPath); code != 0 || !strings.HasPrefix(out, "OK") {
			t.Fatalf("verify --bundle %s: exit %d\n%s%s", id, code, out, errOut)
		}
	}
	counts, size := logRecordIDs(t, s, q, keyPath)
	if size != uint64(len(want)) || len(counts) != len(want) {
		t.Fatalf("log of size %d holds %v; want the %d spans once each", size, counts, len(want))
	}
	for _, id := range want {
		if counts[id] != 1 {
			t.Fatalf("span %s is %d leaves, want 1 (log %v)", id, counts[id], counts)
		}
	}
}
