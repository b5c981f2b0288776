package mcphook

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/proofline/proofline/ingest/mcphook/policy"
	"github.com/proofline/proofline/ingest/outbox"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/schemas"
)

const testPolicy = `
version: 1
rules:
  - name: no-deletes-for-agents
    when: actor.type == "agent" && tool.name == "delete_ticket"
    decision: deny
    reason: agents may not delete tickets
  - name: mask-email
    when: tool.name == "send_email"
    decision: redact
    redact: {paths: [to], in: tool}
  - name: mask-ssn-in-record
    when: tool.name == "lookup_customer"
    decision: redact
    redact: {paths: [ssn], in: record}
`

// harness is one MCP server with the hook, a client session to it over
// the SDK's in-memory transport, and real JetStream behind the outbox.
type harness struct {
	t       testing.TB
	bus     *bus.Bus
	ob      *outbox.Outbox
	spans   *tracetest.SpanRecorder
	tp      *sdktrace.TracerProvider
	hook    *Hook
	server  *mcp.Server
	session *mcp.ClientSession
	calls   map[string]*atomic.Int64
	seen    chan map[string]any // arguments the tools received
	// down makes the crm_* tools fail as a broken downstream does: with
	// a JSON-RPC internal error (system_error).
	down atomic.Bool
}

type args map[string]any

func newHarness(t testing.TB, cfg Config, pol string) *harness {
	t.Helper()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ob, err := outbox.Open(outbox.Config{Publisher: publish.NewPublisher(b.JS), SpoolPath: filepath.Join(t.TempDir(), "spool"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Close(context.Background()) })
	h := &harness{t: t, bus: b, ob: ob, spans: tracetest.NewSpanRecorder(), calls: map[string]*atomic.Int64{}, seen: make(chan map[string]any, 100)}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	cfg.Outbox, cfg.Logger = ob, slog.New(slog.DiscardHandler)
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = h.tp
	}
	if cfg.Server.Name == "" {
		cfg.Server = ServerInfo{Name: "tickets", Version: "1.2.0"}
	}
	cfg.Transport = schemas.TransportStdio
	if pol != "" {
		p, err := policy.Parse([]byte(pol))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Policy = p
	}
	h.hook, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.hook.Close(context.Background()) })
	srv := mcp.NewServer(&mcp.Implementation{Name: "tickets", Version: "1.2.0"}, nil)
	for _, name := range []string{"search_tickets", "delete_ticket", "send_email", "lookup_customer", "create_ticket", "slow", "blocking", "crm_read", "crm_write"} {
		name := name
		h.calls[name] = &atomic.Int64{}
		mcp.AddTool(srv, &mcp.Tool{Name: name, Description: name}, func(ctx context.Context, _ *mcp.CallToolRequest, in args) (*mcp.CallToolResult, any, error) {
			n := h.calls[name].Add(1)
			select {
			case h.seen <- in:
			default:
			}
			switch name {
			case "slow":
				select {
				case <-ctx.Done():
					return nil, nil, ctx.Err()
				case <-time.After(10 * time.Second):
				}
			case "blocking":
				<-ctx.Done()
				return nil, nil, ctx.Err()
			case "crm_read", "crm_write":
				if h.down.Load() {
					return nil, nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "crm unavailable"}
				}
			case "search_tickets":
				if in["query"] == "fail" {
					return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "backend says no"}}}, nil, nil
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " done #" + strconv.FormatInt(n, 10)}}}, nil, nil
		})
	}
	srv.AddReceivingMiddleware(h.hook.ServerMiddleware())
	h.server = srv
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-7", Version: "0.1"}, nil)
	h.session, err = client.Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.session.Close() })
	return h
}

func (h *harness) call(name string, a args, meta mcp.Meta) (*mcp.CallToolResult, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return h.session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: a, Meta: meta})
}

// records waits for n records in the stream and returns them, decoded
// with the strict decoder the signer uses.
func (h *harness) records(n int) []*schemas.CallRecord {
	h.t.Helper()
	// Records travel alone or in envelopes: read the stream until it holds n.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := h.stored()
		if len(out) >= n {
			return out[:n]
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d records in the stream, want %d", len(out), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stored is every record the stream holds now, in order, each checked
// with the strict decoder the signer uses.
func (h *harness) stored() []*schemas.CallRecord {
	h.t.Helper()
	ctx := context.Background()
	s, err := h.bus.JS.Stream(ctx, bus.StreamName)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*schemas.CallRecord
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			h.t.Fatal(err)
		}
		recs, err := publish.Records(m.Header, m.Data)
		if err != nil {
			h.t.Fatalf("message %d: %v", seq, err)
		}
		for _, rec := range recs {
			r, ok := schemas.IsCanonicalRecord(rec.Data)
			if !ok {
				h.t.Fatalf("record in message %d is not a canonical call record: %s", seq, rec.Data)
			}
			if rec.RecordID != r.RecordID {
				h.t.Fatalf("message %d carries record %q as %q", seq, r.RecordID, rec.RecordID)
			}
			if len(recs) == 1 && m.Header.Get(jetstream.MsgIDHeader) != publish.MsgID(r.RecordID, m.Data) {
				h.t.Fatalf("message id %q is not the record id %q", m.Header.Get(jetstream.MsgIDHeader), r.RecordID)
			}
			out = append(out, r)
		}
	}
	return out
}

func wireError(t testing.TB, err error) *jsonrpc.Error {
	t.Helper()
	var we *jsonrpc.Error
	if !errors.As(err, &we) {
		t.Fatalf("error %v (%T), want an MCP error", err, err)
	}
	return we
}

func TestNormalCallIsRecordedAndTraced(t *testing.T) {
	h := newHarness(t, Config{Tools: map[string]ToolConfig{"search_tickets": {Group: "ticketing", DataClass: "internal"}}}, testPolicy)
	// The agent's trace, handed over in _meta.
	parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	res, err := h.call("search_tickets", args{"query": "printer", "limit": 5.0}, mcp.Meta{"traceparent": parent, MetaWorkflowID: "wf-support", MetaPlanID: "plan-9"})
	if err != nil || res.IsError {
		t.Fatalf("call: %v %+v", err, res)
	}
	r := h.records(1)[0]
	if r.Tool.Name != "search_tickets" || r.Tool.Group != "ticketing" || r.Tool.Server != "tickets" || r.Tool.Version != "1.2.0" {
		t.Errorf("tool %+v", r.Tool)
	}
	if r.Actor.ID != "client:agent-7" || r.Actor.Type != schemas.ActorAgent {
		t.Errorf("actor %+v", r.Actor)
	}
	if r.Outcome.Status != schemas.StatusOK || r.Policy.Decision != schemas.DecisionAllow {
		t.Errorf("outcome %+v policy %+v", r.Outcome, r.Policy)
	}
	if r.MCP.Method != "tools/call" || r.MCP.Transport != schemas.TransportStdio || r.DataClass != "internal" || r.WorkflowID != "wf-support" || r.PlanID != "plan-9" {
		t.Errorf("record %+v %+v", r.MCP, r)
	}
	// Only digests: of the canonical arguments, whatever their key order.
	if r.ArgsSHA256 != digest([]byte(`{"query":"printer","limit":5}`)) || r.ResultSHA256 == "" {
		t.Errorf("args digest %s", r.ArgsSHA256)
	}
	raw, _ := r.Canonical()
	if strings.Contains(string(raw), "printer") {
		t.Error("the raw argument reached the record")
	}
	// The server span continues the agent's trace and names the call by
	// the semantic conventions.
	if r.Trace == nil || r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.Trace.ParentSpanID != "00f067aa0ba902b7" {
		t.Fatalf("trace %+v", r.Trace)
	}
	spans := h.spans.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	sp := spans[0]
	if sp.Name() != "tools/call search_tickets" || sp.SpanKind() != trace.SpanKindServer || sp.SpanContext().SpanID().String() != r.Trace.SpanID {
		t.Errorf("span %s %v %s", sp.Name(), sp.SpanKind(), sp.SpanContext().SpanID())
	}
	got := map[string]string{}
	for _, kv := range sp.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	for k, v := range map[string]string{"mcp.method.name": "tools/call", "gen_ai.tool.name": "search_tickets", "gen_ai.operation.name": "execute_tool", "actor.id": "client:agent-7", "policy.decision": "allow", "proofline.record_id": r.RecordID} {
		if got[k] != v {
			t.Errorf("span attribute %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestToolErrorIsRecorded(t *testing.T) {
	h := newHarness(t, Config{}, "")
	res, err := h.call("search_tickets", args{"query": "fail"}, nil)
	if err != nil || !res.IsError {
		t.Fatalf("call: %v %+v", err, res)
	}
	if r := h.records(1)[0]; r.Outcome.Status != schemas.StatusToolError {
		t.Fatalf("outcome %+v", r.Outcome)
	}
}

func TestDeniedCallDoesNotRun(t *testing.T) {
	h := newHarness(t, Config{}, testPolicy)
	_, err := h.call("delete_ticket", args{"id": 42.0}, nil)
	if we := wireError(t, err); we.Code != CodePolicyDenied || !strings.Contains(we.Message, "agents may not delete tickets") {
		t.Fatalf("error %+v", we)
	}
	if n := h.calls["delete_ticket"].Load(); n != 0 {
		t.Fatalf("the denied tool ran %d times", n)
	}
	r := h.records(1)[0]
	if r.Outcome.Status != schemas.StatusPolicyBlocked || r.Policy.Decision != schemas.DecisionDeny || r.Policy.Rule != "no-deletes-for-agents" {
		t.Fatalf("record %+v %+v", r.Outcome, r.Policy)
	}
}

// A rule over the arguments decides each call on its own arguments: the
// hook decodes them for policies that read them, and such a policy's
// decisions are not reused across calls.
func TestRuleOverArguments(t *testing.T) {
	h := newHarness(t, Config{}, testPolicy+`
  - name: no-wildcard-search
    when: tool.name == "search_tickets" && has(args.query) && args.query == "*"
    decision: deny
    reason: wildcard searches dump every ticket
`)
	for i, tc := range []struct {
		query  string
		denied bool
	}{{"printer", false}, {"*", true}, {"printer", false}, {"*", true}} {
		_, err := h.call("search_tickets", args{"query": tc.query}, nil)
		if tc.denied {
			if we := wireError(t, err); we.Code != CodePolicyDenied {
				t.Fatalf("call %d (%q): error %+v", i, tc.query, we)
			}
		} else if err != nil {
			t.Fatalf("call %d (%q): %v", i, tc.query, err)
		}
	}
	if n := h.calls["search_tickets"].Load(); n != 2 {
		t.Fatalf("search_tickets ran %d times, want 2", n)
	}
	recs := h.records(4)
	for i, want := range []string{"", "no-wildcard-search", "", "no-wildcard-search"} {
		if recs[i].Policy.Rule != want {
			t.Errorf("record %d decided by %q, want %q", i, recs[i].Policy.Rule, want)
		}
	}
}

func TestRedaction(t *testing.T) {
	h := newHarness(t, Config{}, testPolicy)
	// In the tool: the tool never sees the address.
	if _, err := h.call("send_email", args{"to": "alice@example.com", "body": "hi"}, nil); err != nil {
		t.Fatal(err)
	}
	if in := <-h.seen; in["to"] != policy.Masked || in["body"] != "hi" {
		t.Fatalf("the tool saw %v", in)
	}
	// In the record only: the tool gets the value, the digest is of the
	// masked arguments (a guessable SSN cannot be confirmed by hashing).
	if _, err := h.call("lookup_customer", args{"ssn": "123-45-6789"}, nil); err != nil {
		t.Fatal(err)
	}
	if in := <-h.seen; in["ssn"] != "123-45-6789" {
		t.Fatalf("the tool saw %v", in)
	}
	recs := h.records(2)
	masked := digest([]byte(`{"to":"[REDACTED]","body":"hi"}`))
	if recs[0].Policy.Decision != schemas.DecisionRedact || recs[0].Policy.Rule != "mask-email" || recs[0].ArgsSHA256 != masked {
		t.Errorf("send_email record %+v args %s", recs[0].Policy, recs[0].ArgsSHA256)
	}
	if recs[1].ArgsSHA256 != digest([]byte(`{"ssn":"[REDACTED]"}`)) || recs[1].Outcome.Status != schemas.StatusOK {
		t.Errorf("lookup_customer record %+v args %s", recs[1].Outcome, recs[1].ArgsSHA256)
	}
}

func TestStagingRecordsWithoutEnforcing(t *testing.T) {
	h := newHarness(t, Config{}, strings.Replace(testPolicy, "version: 1", "version: 1\nmode: staging", 1))
	if _, err := h.call("delete_ticket", args{"id": 1.0}, nil); err != nil {
		t.Fatalf("staging refused a call: %v", err)
	}
	r := h.records(1)[0]
	if h.calls["delete_ticket"].Load() != 1 || r.Outcome.Status != schemas.StatusOK || r.Policy.Decision != schemas.DecisionDeny || r.Attributes["policy.mode"] != "staging" {
		t.Fatalf("record %+v %+v %v", r.Outcome, r.Policy, r.Attributes)
	}
}

func TestRateLimitedBurst(t *testing.T) {
	h := newHarness(t, Config{Limits: Limits{PrincipalRate: 0.001, PrincipalBurst: 3}}, "")
	var ok, limited int
	for range 8 {
		_, err := h.call("search_tickets", args{"query": "x"}, nil)
		switch {
		case err == nil:
			ok++
		case wireError(t, err).Code == CodeRateLimited:
			limited++
		default:
			t.Fatal(err)
		}
	}
	if ok != 3 || limited != 5 || h.calls["search_tickets"].Load() != 3 {
		t.Fatalf("%d allowed, %d limited, tool ran %d times; want 3, 5, 3", ok, limited, h.calls["search_tickets"].Load())
	}
	var blocked int
	for _, r := range h.records(8) {
		if r.Outcome.Status == schemas.StatusPolicyBlocked && r.Policy.Rule == "rate-limit:principal" {
			blocked++
		}
	}
	if blocked != 5 {
		t.Fatalf("%d records of rate-limited calls, want 5", blocked)
	}
}

func TestIdempotentWrite(t *testing.T) {
	h := newHarness(t, Config{Tools: map[string]ToolConfig{"create_ticket": {Write: true}}}, "")
	_, err := h.call("create_ticket", args{"title": "printer"}, nil)
	if we := wireError(t, err); we.Code != CodeIdempotencyRequired {
		t.Fatalf("no key: %+v", we)
	}
	key := mcp.Meta{MetaIdempotencyKey: "k-1"}
	first, err := h.call("create_ticket", args{"title": "printer"}, key)
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.call("create_ticket", args{"title": "printer"}, key)
	if err != nil {
		t.Fatal(err)
	}
	if n := h.calls["create_ticket"].Load(); n != 1 {
		t.Fatalf("the write ran %d times for one key", n)
	}
	a, _ := json.Marshal(first.Content)
	b, _ := json.Marshal(again.Content)
	if string(a) != string(b) {
		t.Fatalf("replay answered %s, first %s", b, a)
	}
	if _, err := h.call("create_ticket", args{"title": "other"}, mcp.Meta{MetaIdempotencyKey: "k-2"}); err != nil || h.calls["create_ticket"].Load() != 2 {
		t.Fatalf("a new key did not run the tool: %v", err)
	}
	recs := h.records(4)
	if recs[0].Outcome.Status != schemas.StatusPolicyBlocked || recs[0].Policy.Rule != "idempotency-key-required" {
		t.Errorf("no-key record %+v", recs[0].Policy)
	}
	if recs[1].Attributes["proofline.idempotent_replay"] != "" || recs[2].Attributes["proofline.idempotent_replay"] != "true" {
		t.Errorf("replay not marked: %v / %v", recs[1].Attributes, recs[2].Attributes)
	}
	if recs[1].ResultSHA256 != recs[2].ResultSHA256 {
		t.Error("replayed result differs from the first")
	}
}

func TestTimeoutAndConcurrencyCap(t *testing.T) {
	h := newHarness(t, Config{
		Tools:  map[string]ToolConfig{"slow": {Timeout: 100 * time.Millisecond}, "blocking": {MaxConcurrent: 1, Timeout: 2 * time.Second}},
		Limits: Limits{MaxWait: 50 * time.Millisecond},
	}, "")
	_, err := h.call("slow", nil, nil)
	if we := wireError(t, err); we.Code != CodeTimeout {
		t.Fatalf("slow: %+v", we)
	}
	// One blocking call holds the only slot; a second is refused after
	// MaxWait.
	done := make(chan error, 1)
	go func() {
		_, err := h.call("blocking", nil, nil)
		done <- err
	}()
	for h.calls["blocking"].Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	_, err = h.call("blocking", nil, nil)
	if we := wireError(t, err); we.Code != CodeOverloaded {
		t.Fatalf("second blocking call: %+v", we)
	}
	if err := <-done; wireError(t, err).Code != CodeTimeout {
		t.Fatalf("first blocking call: %v", err)
	}
	statuses := map[string]int{}
	for _, r := range h.records(3) {
		statuses[r.Outcome.Status]++
	}
	if statuses[schemas.StatusTimeout] != 2 || statuses[schemas.StatusSystemError] != 1 {
		t.Fatalf("statuses %v, want 2 timeouts and 1 system_error", statuses)
	}
}

func TestClientMiddlewarePropagatesTrace(t *testing.T) {
	h := newHarness(t, Config{}, "")
	// A second server and a client with the client-side hook.
	ctx, plan := StartPlan(context.Background(), h.tp, "plan-1")
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-8"}, nil)
	client.AddSendingMiddleware(h.hook.ClientMiddleware(Identity{ID: "agent-8", Type: schemas.ActorAgent, Scopes: []string{"tickets:read"}}))
	srv := mcp.NewServer(&mcp.Implementation{Name: "tickets"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "search_tickets"}, func(ctx context.Context, _ *mcp.CallToolRequest, in args) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
	})
	srv.AddReceivingMiddleware(h.hook.ServerMiddleware())
	cs := connect(t, srv, client)
	callerMeta := mcp.Meta{"note": "mine"}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "search_tickets", Arguments: args{"query": "x"}, Meta: callerMeta}); err != nil {
		t.Fatal(err)
	}
	// (The SDK adds its own keys to the caller's map; the hook must not.)
	if _, ok := callerMeta["traceparent"]; ok {
		t.Errorf("the client hook wrote into the caller's _meta: %v", callerMeta)
	}
	plan.End()
	recs := h.records(2)
	byHook := map[string]*schemas.CallRecord{}
	for _, r := range recs {
		byHook[r.Attributes["proofline.hook"]] = r
	}
	cli, srvRec := byHook["client"], byHook["server"]
	if cli == nil || srvRec == nil {
		t.Fatalf("records %v", recs)
	}
	// agent.plan → client span → server span, one trace.
	planSC := plan.SpanContext()
	if cli.Trace.TraceID != planSC.TraceID().String() || cli.Trace.ParentSpanID != planSC.SpanID().String() {
		t.Errorf("client span not under the plan: %+v", cli.Trace)
	}
	if srvRec.Trace.TraceID != cli.Trace.TraceID || srvRec.Trace.ParentSpanID != cli.Trace.SpanID {
		t.Errorf("server span %+v not the child of client span %+v", srvRec.Trace, cli.Trace)
	}
	if cli.PlanID != "plan-1" || srvRec.PlanID != "plan-1" || cli.Actor.ID != "agent-8" || cli.ArgsSHA256 != srvRec.ArgsSHA256 {
		t.Errorf("client %+v / server %+v", cli, srvRec)
	}
}

// TestTraceIDsWithoutTracingSDK: with the OpenTelemetry API's no-op
// provider, records still carry W3C ids, continuing the caller's trace.
func TestTraceIDsWithoutTracingSDK(t *testing.T) {
	h := newHarness(t, Config{TracerProvider: noop.NewTracerProvider()}, "")
	if _, err := h.call("search_tickets", args{"query": "x"}, mcp.Meta{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.call("search_tickets", args{"query": "y"}, nil); err != nil {
		t.Fatal(err)
	}
	recs := h.records(2)
	if tr := recs[0].Trace; tr == nil || tr.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || tr.ParentSpanID != "00f067aa0ba902b7" || tr.SpanID == tr.ParentSpanID || len(tr.SpanID) != 16 {
		t.Fatalf("continued trace %+v", tr)
	}
	if tr := recs[1].Trace; tr == nil || len(tr.TraceID) != 32 || tr.TraceID == recs[0].Trace.TraceID || tr.ParentSpanID != "" {
		t.Fatalf("new trace %+v", tr)
	}
}

// TestClientSidePolicy: with a policy, the client hook refuses a call
// before it leaves the agent, and records the refusal.
func TestClientSidePolicy(t *testing.T) {
	h := newHarness(t, Config{}, testPolicy)
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-9"}, nil)
	client.AddSendingMiddleware(h.hook.ClientMiddleware(Identity{ID: "agent-9", Type: schemas.ActorAgent}))
	srv := mcp.NewServer(&mcp.Implementation{Name: "tickets"}, nil)
	var ran atomic.Int64
	mcp.AddTool(srv, &mcp.Tool{Name: "delete_ticket"}, func(context.Context, *mcp.CallToolRequest, args) (*mcp.CallToolResult, any, error) {
		ran.Add(1)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "deleted"}}}, nil, nil
	})
	cs := connect(t, srv, client)
	_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "delete_ticket", Arguments: args{"id": 1.0}})
	if we := wireError(t, err); we.Code != CodePolicyDenied {
		t.Fatalf("error %+v", we)
	}
	if ran.Load() != 0 {
		t.Fatal("the call reached the server")
	}
	r := h.records(1)[0]
	if r.Attributes["proofline.hook"] != "client" || r.Outcome.Status != schemas.StatusPolicyBlocked || r.Policy.Rule != "no-deletes-for-agents" {
		t.Fatalf("record %+v %+v %v", r.Outcome, r.Policy, r.Attributes)
	}
}

// connect joins client to srv over the SDK's in-memory transport.
func connect(t *testing.T, srv *mcp.Server, client *mcp.Client) *mcp.ClientSession {
	t.Helper()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	cs, err := client.Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}
