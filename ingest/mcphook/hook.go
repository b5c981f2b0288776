// Package mcphook is proofline's middleware for MCP servers and clients
// built on the official Go MCP SDK (github.com/modelcontextprotocol/go-sdk).
// Around every tools/call — and tools/list, resources/read, prompts/get —
// it applies the control plane's decisions before the tool runs (CEL
// policy, rate limits, concurrency caps, timeouts, idempotency keys for
// write tools), records one call record per call into an outbox that
// publishes to JetStream without ever blocking the call, and emits an
// OpenTelemetry span following the MCP and GenAI semantic conventions,
// with W3C trace context carried in the request's _meta.
//
// Adding it to a server:
//
//	hook, _ := mcphook.New(mcphook.Config{Outbox: ob, Policy: pol, Server: mcphook.ServerInfo{Name: "tickets"}})
//	server.AddReceivingMiddleware(hook.ServerMiddleware())
package mcphook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/gowebpki/jcs"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/proofline/proofline/ingest/mcphook/policy"
	"github.com/proofline/proofline/ingest/outbox"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/schemas"
)

// MCP error codes of refused calls: JSON-RPC application codes, clear of
// the ones the SDK itself uses (-32001 to -32005, -32002, -32020s, -32042),
// since the SDK's clients interpret those.
const (
	CodePolicyDenied         = -32080
	CodeRateLimited          = -32081
	CodeOverloaded           = -32082
	CodeTimeout              = -32083
	CodeIdempotencyRequired  = -32084
	CodeRecordingUnavailable = -32085
	// CodeCircuitOpen refuses a call while the circuit breaker of its tool
	// (or of the service behind it) is open; the record's outcome is
	// system_error with this error_code.
	CodeCircuitOpen = -32086
	// CodeBudgetExceeded refuses a call that a budget has no room for;
	// the record is policy_blocked with policy.rule "budget:NAME".
	CodeBudgetExceeded = -32087
)

// Keys of _meta proofline reads.
const (
	MetaTraceparent    = "traceparent"
	MetaTracestate     = "tracestate"
	MetaIdempotencyKey = "idempotency_key"
	MetaWorkflowID     = "proofline/workflow_id"
	MetaPlanID         = "proofline/plan_id"
)

// Identity is who makes a call.
type Identity struct {
	ID         string
	Type       string // agent, user or service
	OnBehalfOf string
	Scopes     []string
	// Elevation is a grant of further scopes for this call, with its
	// approver: recorded in the call record, and while it has not expired
	// its scopes count in the policy's scopes and elevation.* variables.
	Elevation *schemas.Elevation
	// elevationErr is an elevation claim that could not be read; the
	// call is refused.
	elevationErr error
}

// ServerInfo names the MCP server in records (tool.server, tool.version).
type ServerInfo struct {
	Name    string
	Version string
}

// ToolConfig is per-tool configuration.
type ToolConfig struct {
	// Group is the record's tool.group (SLOs and KPIs are per group).
	Group string
	// DataClass is the record's data_class, and what policies see.
	DataClass string
	// Write marks a tool with side effects: calls must carry an
	// idempotency key in _meta, and a repeated key returns the first
	// result without running the tool again.
	Write bool
	// Timeout bounds one call (0: Limits.DefaultTimeout).
	Timeout time.Duration
	// MaxConcurrent caps calls running at once (0: Limits.DefaultMaxConcurrent).
	MaxConcurrent int
	// Rate and Burst limit calls per second to this tool, all callers
	// together (0: Limits.ToolRate).
	Rate  float64
	Burst int
	// Service is the downstream service the tool calls: tools naming the
	// same service share one circuit breaker, since they fail together.
	// Empty: the tool has its own.
	Service string
	// Breaker overrides Limits.Breaker for this tool (or its service).
	Breaker *BreakerConfig
	// Owner is who answers for the tool (a team, a person): in its
	// catalog records.
	Owner string
	// Cost is what one call of the tool costs, in Currency, as its owner
	// declares it: it goes into the record's cost and counts against
	// cost budgets (0: none declared).
	Cost     float64
	Currency string
}

// Config configures a Hook.
type Config struct {
	// Outbox receives the records. Required.
	Outbox *outbox.Outbox
	// Principal is the records' ingested_by: which hook made them.
	Principal string
	// Policy decides calls; nil allows everything.
	Policy *policy.Policy
	Server ServerInfo
	// Transport is the record's mcp.transport (stdio or http).
	Transport string
	Region    string
	Tools     map[string]ToolConfig
	Limits    Limits
	// FailClosed refuses calls while the outbox cannot take records (its
	// spool is full): no call without a record. Otherwise calls go on and
	// their records are dropped, counted in the outbox's stats.
	FailClosed bool
	// Identify says who makes a call; nil uses DefaultIdentify.
	Identify func(ctx context.Context, req mcp.Request) Identity
	// TracerProvider makes the spans; nil uses the global one.
	TracerProvider trace.TracerProvider
	// IdempotencyTTL and IdempotencyEntries bound the remembered results
	// of write tools (defaults 24 h and 100,000).
	IdempotencyTTL     time.Duration
	IdempotencyEntries int
	// ElevationFromMeta reads a call's elevation from its
	// _meta["proofline/elevation"] when the bearer token carries none.
	// Turn it on only when the gateway in front of the server sets that
	// key and no client can reach the server past it: a client can write
	// anything into _meta.
	ElevationFromMeta bool
	Logger            *slog.Logger
	// MeterProvider receives the hook's metrics (circuit breaker states,
	// budgets); nil uses the global one.
	MeterProvider metric.MeterProvider
	// RecordCatalog records each tool of the server's tools/list answers
	// when it first appears and whenever it changes (its title, version,
	// schemas, description, annotations), and when it is gone, as catalog
	// records in the log (mcp.method "catalog/tool"): the evidence of what
	// agents were offered, and when.
	RecordCatalog bool
	// Budgets cap calls and declared cost per period; see Budget.
	Budgets []Budget
	// BudgetStore shares budget usage between the replicas of a server
	// and keeps it across restarts (OpenBudgetStore); nil keeps it in
	// this process only, starting from zero at each start.
	BudgetStore jetstream.KeyValue
	// BudgetSync is how often usage is exchanged with BudgetStore
	// (default 200 ms): replicas together can overspend a budget by what
	// they admit in one interval.
	BudgetSync time.Duration
}

// Hook is the middleware; safe for concurrent use.
type Hook struct {
	cfg    Config
	tracer trace.Tracer
	// spanOpts are the span start options of each side's calls, made
	// once: options made per call are allocations on the call's path.
	spanOpts map[trace.SpanKind][]trace.SpanStartOption
	prop     propagation.TextMapPropagator
	lim      *limiter
	idem     *idempotency
	hist     *history
	cat      catalog
	brk      *breakers
	bud      *budgets
	log      *slog.Logger
	now      func() time.Time
	sealq    *sealq
	runner   *runner
}

// New makes a Hook. Close it before its outbox.
func New(cfg Config) (*Hook, error) {
	if cfg.Outbox == nil {
		return nil, errors.New("mcphook: Config.Outbox is required")
	}
	if cfg.Principal == "" {
		cfg.Principal = "mcphook"
	}
	if cfg.Identify == nil {
		cfg.Identify = DefaultIdentify
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	h := &Hook{
		cfg:    cfg,
		tracer: tp.Tracer("github.com/proofline/proofline/ingest/mcphook"),
		spanOpts: map[trace.SpanKind][]trace.SpanStartOption{
			trace.SpanKindServer: {trace.WithSpanKind(trace.SpanKindServer)},
			trace.SpanKindClient: {trace.WithSpanKind(trace.SpanKindClient)},
		},
		prop:   propagation.TraceContext{},
		lim:    newLimiter(cfg.Limits, cfg.Tools),
		idem:   newIdempotency(cfg.IdempotencyTTL, cfg.IdempotencyEntries),
		hist:   newHistory(),
		log:    cfg.Logger,
		now:    time.Now,
		sealq:  newSealq(),
		runner: newRunner(),
		cat:    catalog{known: map[string]string{}},
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	onState, err := h.breakerMetrics(mp)
	if err != nil {
		return nil, fmt.Errorf("mcphook: metrics: %w", err)
	}
	if h.brk, err = newBreakers(cfg.Limits.Breaker, cfg.Tools, onState); err != nil {
		return nil, fmt.Errorf("mcphook: %w", err)
	}
	for name, tc := range cfg.Tools {
		if tc.Cost < 0 || math.IsNaN(tc.Cost) || math.IsInf(tc.Cost, 0) || tc.Cost > 0 && !isCurrencyCode(tc.Currency) {
			return nil, fmt.Errorf("mcphook: tool %s: Cost %v needs to be finite, not negative, with a Currency (ISO 4217), not %q", name, tc.Cost, tc.Currency)
		}
	}
	if h.bud, err = newBudgets(cfg.Budgets, cfg.Tools, cfg.BudgetStore, cfg.BudgetSync, mp, cfg.Logger); err != nil {
		return nil, fmt.Errorf("mcphook: %w", err)
	}
	go h.sealq.run(func(p pending) { h.complete(context.Background(), p) })
	return h, nil
}

// DefaultIdentify takes the caller from the request's bearer token (as
// verified by the SDK's auth middleware: UserID, Scopes; Extra
// "actor_type" and "on_behalf_of"), else from the client's name in the
// session's initialize request. A production server should authenticate:
// a client's self-declared name is not an identity.
func DefaultIdentify(_ context.Context, req mcp.Request) Identity {
	if ex := req.GetExtra(); ex != nil && ex.TokenInfo != nil && ex.TokenInfo.UserID != "" {
		id := Identity{ID: ex.TokenInfo.UserID, Type: schemas.ActorAgent, Scopes: ex.TokenInfo.Scopes}
		if t, ok := ex.TokenInfo.Extra["actor_type"].(string); ok && t != "" {
			id.Type = t
		}
		if o, ok := ex.TokenInfo.Extra["on_behalf_of"].(string); ok {
			id.OnBehalfOf = o
		}
		if v, ok := ex.TokenInfo.Extra[TokenElevation]; ok {
			id.Elevation, id.elevationErr = parseElevation(v)
		}
		return id
	}
	if ss, ok := req.GetSession().(*mcp.ServerSession); ok {
		if ip := ss.InitializeParams(); ip != nil && ip.ClientInfo != nil && ip.ClientInfo.Name != "" {
			return Identity{ID: "client:" + ip.ClientInfo.Name, Type: schemas.ActorAgent}
		}
	}
	return Identity{ID: "anonymous", Type: schemas.ActorAgent}
}

// ServerMiddleware is the receiving middleware for an mcp.Server.
func (h *Hook) ServerMiddleware() mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			switch method {
			case "tools/call", "tools/list", "resources/read", "prompts/get":
				return h.serve(ctx, method, req, next)
			default:
				return next(ctx, method, req)
			}
		}
	}
}

// call is what the hook knows about one call while it runs.
type call struct {
	start    time.Time
	method   string
	target   string // tool name, resource URI or prompt name
	tool     ToolConfig
	identity Identity
	session  string
	// server is the MCP server called: the hook's own on the server side,
	// the peer's (from initialize) on the client side.
	server ServerInfo
	// history keys the session's history (session.tools).
	history string
	meta    mcp.Meta
	args    map[string]any // decodeArgs
	rawArgs json.RawMessage
	// argsDecoded is set once decodeArgs ran.
	argsDecoded bool
	decision    policy.Decision
	// cost is the declared cost of a call that ran (ToolConfig.Cost).
	cost *schemas.Cost
	span trace.Span
	// sc and parent are the call's own span context and its parent's:
	// the span's, or generated when no tracing SDK is installed, since a
	// record needs its W3C ids either way.
	sc, parent trace.SpanContext
	// side is the hook's side, "server" or "client" (the record's
	// proofline.hook attribute).
	side string
	// attrs are the record's attributes the call's path set; nil until
	// one is (most calls set none). Set them with setAttr.
	attrs map[string]string
}

func (c *call) setAttr(k, v string) {
	if c.attrs == nil {
		c.attrs = make(map[string]string, 2)
	}
	c.attrs[k] = v
}

// noSpan is the span of a call before its own starts: a call that
// panics early still ends and annotates a span, and no path meets a nil
// one.
var noSpan = trace.SpanFromContext(context.Background())

func (h *Hook) newCall(method, side string) *call {
	return &call{start: h.now(), method: method, span: noSpan, decision: policy.Decision{Effect: policy.Allow, Enforced: true}, side: side}
}

// decodeArgs decodes the call's arguments once, on first use; nil when
// there are none or they are not a JSON object (the SDK rejects those).
func (c *call) decodeArgs() map[string]any {
	if !c.argsDecoded && len(c.rawArgs) > 0 {
		if err := json.Unmarshal(c.rawArgs, &c.args); err != nil {
			c.args = nil
		}
	}
	c.argsDecoded = true
	return c.args
}

// startSpan starts the call's span. With the OpenTelemetry API's no-op
// provider (no SDK installed), the span would carry no ids of its own —
// or its parent's — so the hook makes the W3C ids itself and puts them in
// ctx, for the record, for the tool's own outgoing calls and for _meta.
func (h *Hook) startSpan(ctx context.Context, c *call, name string, kind trace.SpanKind) context.Context {
	c.parent = trace.SpanContextFromContext(ctx)
	ctx, c.span = h.tracer.Start(ctx, name, h.spanOpts[kind]...)
	c.sc = c.span.SpanContext()
	if c.span.IsRecording() && c.sc.IsValid() {
		return ctx
	}
	cfg := trace.SpanContextConfig{TraceID: c.parent.TraceID(), TraceFlags: c.parent.TraceFlags() | trace.FlagsSampled, TraceState: c.parent.TraceState()}
	if !c.parent.IsValid() {
		cfg.TraceID = newTraceID()
	}
	cfg.SpanID = newSpanID()
	c.sc = trace.NewSpanContext(cfg)
	return trace.ContextWithSpanContext(ctx, c.sc)
}

// Trace and span ids need to be unique, not secret: math/rand/v2's
// generator (ChaCha8, seeded from the OS) is what the OpenTelemetry SDK
// settles for too, and it does not take crypto/rand's syscall per id.
func newTraceID() trace.TraceID {
	var id trace.TraceID
	binary.BigEndian.PutUint64(id[:8], rand.Uint64())
	binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	binary.BigEndian.PutUint64(id[:], rand.Uint64()|1) // never the invalid all-zero id
	return id
}

// serve runs one call on the server side. It never lets a panic through:
// the SDK recovers none, and one panic in an HTTP server's call ends every
// session of every client. A panic in the hook or in the tool is logged
// with its stack, recorded (system_error) and answered as a JSON-RPC
// internal error.
func (h *Hook) serve(ctx context.Context, method string, req mcp.Request, next mcp.MethodHandler) (res mcp.Result, err error) {
	c := h.newCall(method, "server")
	c.server = h.cfg.Server
	defer func() {
		if v := recover(); v != nil {
			res, err = h.recovered(ctx, c, v, debug.Stack())
		}
		c.span.End()
	}()
	// Params may be a typed nil: a request without "params" (the
	// TypeScript SDK's listTools(), the MCP Inspector, the conformance
	// client send tools/list so) arrives as a nil *ListToolsParams.
	var raw *mcp.CallToolParamsRaw
	switch p := req.GetParams().(type) {
	case *mcp.CallToolParamsRaw:
		if p != nil {
			raw, c.target, c.meta, c.rawArgs = p, p.Name, p.Meta, p.Arguments
		}
	case *mcp.ReadResourceParams:
		if p != nil {
			c.target, c.meta = p.URI, p.Meta
		}
	case *mcp.GetPromptParams:
		if p != nil {
			c.target, c.meta = p.Name, p.Meta
		}
	case *mcp.ListToolsParams:
		c.target = "tools/list"
		if p != nil {
			c.meta = p.Meta
		}
	}
	c.tool = h.cfg.Tools[c.target]
	if s := req.GetSession(); s != nil {
		c.session = s.ID()
	}
	c.history = c.session
	c.identity = h.cfg.Identify(ctx, req)
	if v, ok := c.meta[MetaElevation]; ok && h.cfg.ElevationFromMeta && c.identity.Elevation == nil && c.identity.elevationErr == nil {
		c.identity.Elevation, c.identity.elevationErr = parseElevation(v)
	}

	// Continue the caller's trace from _meta, so agent → MCP → downstream
	// API is one trace.
	ctx = h.prop.Extract(ctx, metaCarrier(c.meta))
	spanName := method
	if method != "tools/list" && c.target != "" {
		spanName = method + " " + c.target
	}
	ctx = h.startSpan(ctx, c, spanName, trace.SpanKindServer)

	if method != "tools/call" {
		res, err := safeNext(ctx, method, req, next)
		var pe *panicError
		if errors.As(err, &pe) {
			return h.recovered(ctx, c, pe.value, pe.stack)
		}
		h.finish(ctx, c, res, err, "")
		if lr, ok := res.(*mcp.ListToolsResult); ok && err == nil && h.cfg.RecordCatalog {
			lp, _ := req.GetParams().(*mcp.ListToolsParams)
			h.recordCatalog(ctx, lr, lp == nil || lp.Cursor == "")
		}
		return res, err
	}

	if err := c.identity.elevationErr; err != nil {
		c.decision = policy.Decision{Effect: policy.Deny, Rule: "invalid-elevation", Reason: err.Error(), Enforced: true}
		return h.refuse(ctx, c, schemas.StatusPolicyBlocked, CodePolicyDenied, "denied: "+err.Error())
	}
	h.decide(ctx, c)
	if c.decision.Enforced && c.decision.Effect == policy.Deny {
		return h.refuse(ctx, c, schemas.StatusPolicyBlocked, CodePolicyDenied, "denied by policy "+c.decision.Rule+": "+c.decision.Reason)
	}
	if ok, retry, which := h.lim.allow(c.identity.ID, c.target); !ok {
		c.decision = policy.Decision{Effect: policy.Deny, Rule: "rate-limit:" + which, Reason: fmt.Sprintf("over the %s rate limit; retry after %s", which, retry.Round(time.Millisecond)), Enforced: true}
		return h.refuse(ctx, c, schemas.StatusPolicyBlocked, CodeRateLimited, c.decision.Reason)
	}
	if h.cfg.FailClosed && h.cfg.Outbox.Full() {
		return h.refuse(ctx, c, schemas.StatusSystemError, CodeRecordingUnavailable, "call records cannot be stored right now; refusing calls (fail closed)")
	}
	var idemKey string
	if c.tool.Write {
		idemKey, _ = c.meta[MetaIdempotencyKey].(string)
		if idemKey == "" {
			c.decision = policy.Decision{Effect: policy.Deny, Rule: "idempotency-key-required", Reason: c.target + " is a write tool: _meta." + MetaIdempotencyKey + " is required", Enforced: true}
			return h.refuse(ctx, c, schemas.StatusPolicyBlocked, CodeIdempotencyRequired, c.decision.Reason)
		}
	}

	// Redaction before the tool sees the arguments (or in the record only).
	recordArgs := c.rawArgs
	if c.decision.Effect == policy.Redact && c.decision.Enforced && c.decodeArgs() != nil {
		masked, err := json.Marshal(policy.RedactArgs(c.args, c.decision.Redact))
		if err != nil {
			return h.refuse(ctx, c, schemas.StatusSystemError, jsonrpc.CodeInternalError, "redaction failed")
		}
		recordArgs = masked
		if c.decision.RedactIn == policy.InTool && raw != nil {
			p := *raw
			p.Arguments = masked
			ss, _ := req.GetSession().(*mcp.ServerSession)
			req = &mcp.ServerRequest[*mcp.CallToolParamsRaw]{Session: ss, Params: &p, Extra: req.GetExtra()}
		}
	}
	c.rawArgs = recordArgs

	// run never panics: a panic becomes a *panicError, so that callers
	// waiting on the same idempotency key are not left waiting.
	run := func(ctx context.Context) (res mcp.Result, err error) {
		var done func(status string)
		defer func() {
			if v := recover(); v != nil {
				res, err = nil, &panicError{value: v, stack: debug.Stack()}
			}
			// Every call a breaker let through reports back, or a
			// half-open breaker would wait for its probe for ever.
			if done != nil {
				done(breakerStatus(res, err))
			}
		}()
		if br := h.brk.of(c.target); br != nil {
			if done, err = br.allow(); err != nil {
				c.setAttr("proofline.breaker", br.key)
				return nil, br.refusal(c.target, err)
			}
		}
		adm, marks, over := h.bud.admit(ctx, c.target, c.tool, c.identity.ID)
		if over != nil {
			c.decision = policy.Decision{Effect: policy.Deny, Rule: "budget:" + over.name, Reason: over.reason, Enforced: true}
			return nil, &refusal{status: schemas.StatusPolicyBlocked, code: CodeBudgetExceeded, msg: "denied by budget " + over.name + ": " + over.reason}
		}
		for k, v := range marks {
			c.setAttr(k, v)
		}
		c.cost = costOf(c.tool)
		release, err := h.lim.acquire(ctx, c.target)
		if err != nil {
			adm.undo()
			c.cost = nil
			return nil, &refusal{status: schemas.StatusSystemError, code: CodeOverloaded, msg: err.Error()}
		}
		defer release()
		return h.runWithTimeout(ctx, c, method, req, next)
	}
	if idemKey != "" {
		var replay bool
		res, replay, err = h.idem.do(ctx, c.identity.ID+"\x00"+c.target+"\x00"+idemKey, run)
		if replay {
			c.setAttr("proofline.idempotent_replay", "true")
		}
	} else {
		res, err = run(ctx)
	}
	if err != nil {
		// errors.As's target escapes: looked for only when there is an
		// error, so that a call that succeeded allocates neither.
		var rf *refusal
		if errors.As(err, &rf) {
			return h.refuse(ctx, c, rf.status, rf.code, rf.msg)
		}
		var pe *panicError
		if errors.As(err, &pe) {
			return h.recovered(ctx, c, pe.value, pe.stack)
		}
	}
	if h.cfg.Policy != nil && h.cfg.Policy.Reads("session") {
		h.hist.add(c.history, c.target)
	}
	h.finish(ctx, c, res, err, "")
	return res, err
}

// refusal is a call the hook stopped after deciding to run it (overload,
// timeout).
type refusal struct {
	status string
	code   int64
	msg    string
}

func (r *refusal) Error() string { return r.msg }

// panicError is a panic of the tool (or of the hook) caught on the call's
// path and carried back as an error to be recorded and answered.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// safeNext runs the next handler, turning a panic into a *panicError. It
// is the hook's own goroutine that runs a tool under a timeout, where no
// caller up the stack could recover the panic.
func safeNext(ctx context.Context, method string, req mcp.Request, next mcp.MethodHandler) (res mcp.Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = nil, &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return next(ctx, method, req)
}

// decide evaluates the policy on a call, on either side: one place builds
// the rules' variables, so that a rule decides the same in the agent's
// client hook as in the server's (and as in proofline policy test).
func (h *Hook) decide(ctx context.Context, c *call) {
	c.decision = policy.Decision{Effect: policy.Allow, Enforced: true}
	pol := h.cfg.Policy
	if pol == nil {
		return
	}
	// Only what some rule reads is gathered: decoding the arguments and
	// copying the session's history are most of a policy's cost on the
	// call's path.
	in := policy.Input{
		Actor:  policy.Actor{ID: c.identity.ID, Type: c.identity.Type, OnBehalfOf: c.identity.OnBehalfOf},
		Tool:   policy.Tool{Name: c.target, Server: c.server.Name, Group: c.tool.Group, Version: c.server.Version, Write: c.tool.Write},
		Method: c.method, Scopes: c.identity.Scopes, DataClass: c.tool.DataClass,
	}
	if e := activeElevation(c.identity.Elevation, c.start); e != nil {
		in.Scopes = append(slices.Clip(in.Scopes), e.Scopes...)
		in.Elevation = policy.Elevation{Scopes: e.Scopes, Approver: e.Approver, Reason: e.Reason}
	}
	if pol.Reads("args") {
		in.Args = c.decodeArgs()
	}
	if pol.Reads("session") {
		in.SessionTools = h.hist.tools(c.history)
	}
	d, err := pol.Evaluate(in)
	if err != nil {
		h.log.WarnContext(ctx, "mcphook: policy rule failed to evaluate", "tool", c.target, "err", err)
	}
	c.decision = d
	if !d.Enforced {
		c.setAttr("policy.mode", policy.Staging)
	}
}

// recovered answers a call that panicked with a JSON-RPC internal error,
// after logging the panic with its stack and handing the call's record
// (system_error) to the outbox itself: the panic may have come from
// anywhere, and the record must not wait on anything that could be
// broken. A second panic while recording is logged, not raised.
func (h *Hook) recovered(ctx context.Context, c *call, v any, stack []byte) (mcp.Result, error) {
	h.log.ErrorContext(ctx, "mcphook: recovered a panic; the call is answered with an internal error",
		"method", c.method, "target", c.target, "panic", fmt.Sprint(v), "stack", string(stack))
	err := &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error (a panic in the server, recovered by proofline's hook; see the server's log)"}
	// A panic after the call's record was handed to the sealer (in the
	// catalog's recording, say) must not change the call under it.
	cc := *c
	cc.attrs = maps.Clone(c.attrs)
	c = &cc
	if c.identity.ID == "" {
		c.identity = Identity{ID: "unknown", Type: schemas.ActorAgent}
	}
	if c.identity.Type == "" {
		c.identity.Type = schemas.ActorAgent
	}
	func() {
		defer func() {
			if v2 := recover(); v2 != nil {
				h.log.ErrorContext(ctx, "mcphook: the record of a panicked call could not be made", "method", c.method, "panic", fmt.Sprint(v2), "stack", string(debug.Stack()))
			}
		}()
		h.complete(ctx, h.pendingOf(c, nil, err, schemas.StatusSystemError))
	}()
	return nil, err
}

// runWithTimeout runs the tool, giving up after its timeout. A handler
// that ignores its context keeps running in the background; the caller
// gets its error now, which is what a timeout is for.
func (h *Hook) runWithTimeout(ctx context.Context, c *call, method string, req mcp.Request, next mcp.MethodHandler) (mcp.Result, error) {
	timeout := c.tool.Timeout
	if timeout <= 0 {
		timeout = h.cfg.Limits.DefaultTimeout
	}
	if timeout <= 0 {
		return next(ctx, method, req)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type out struct {
		res mcp.Result
		err error
	}
	done := make(chan out, 1)
	h.runner.run(func() {
		res, err := safeNext(ctx, method, req, next)
		done <- out{res, err}
	})
	select {
	case o := <-done:
		var pe *panicError
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && o.err != nil && !errors.As(o.err, &pe) {
			return nil, &refusal{status: schemas.StatusTimeout, code: CodeTimeout, msg: fmt.Sprintf("%s timed out after %s", c.target, timeout)}
		}
		return o.res, o.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &refusal{status: schemas.StatusTimeout, code: CodeTimeout, msg: fmt.Sprintf("%s timed out after %s", c.target, timeout)}
		}
		return nil, ctx.Err()
	}
}

// refuse answers a call the hook did not let run (or gave up on) with an
// MCP error, and records it.
func (h *Hook) refuse(ctx context.Context, c *call, status string, code int64, msg string) (mcp.Result, error) {
	err := &jsonrpc.Error{Code: code, Message: msg}
	h.finish(ctx, c, nil, err, status)
	return nil, err
}

// finish records the call and annotates its span.
func (h *Hook) finish(ctx context.Context, c *call, res mcp.Result, callErr error, status string) {
	h.seal(ctx, h.pendingOf(c, res, callErr, status))
}

// pendingOf takes what the call's record needs from the call's path:
// its end, outcome and result, and the _meta values it names. res may be
// nil or a typed nil (a handler's (nil, err)); the record then has no
// result digest. The record itself is made by the sealer (recordOf), off
// the call's path, unless the call has a recording span, whose
// attributes name the record before the span ends.
func (h *Hook) pendingOf(c *call, res mcp.Result, callErr error, status string) pending {
	if isNil(res) {
		res = nil
	}
	p := pending{call: c, end: h.now(), args: c.rawArgs}
	if e := c.identity.Elevation; e != nil && activeElevation(e, c.start) == nil {
		// On record, but it granted nothing: the policy saw no elevation.
		c.setAttr("proofline.elevation", "expired")
	}
	// What the caller may change once the call returned is read now: an
	// agent may reuse its params (and their _meta) for its next call.
	p.workflowID, _ = c.meta[MetaWorkflowID].(string)
	p.planID, _ = c.meta[MetaPlanID].(string)
	switch {
	case status != "":
		p.outcome.Status = status
	case callErr != nil:
		p.outcome.Status = statusOf(callErr)
	default:
		p.outcome.Status = schemas.StatusOK
		if tr, ok := res.(*mcp.CallToolResult); ok && tr.IsError {
			p.outcome.Status = schemas.StatusToolError
		}
	}
	if callErr != nil {
		var we *jsonrpc.Error
		if errors.As(callErr, &we) {
			p.outcome.ErrorCode = fmt.Sprint(we.Code)
		}
		p.outcome.ErrorMessage = truncate(callErr.Error(), 4096)
	}
	switch res := res.(type) {
	case nil:
	case *mcp.CallToolResult:
		// A shallow copy, serialized by the sealer: the SDK may set
		// fields of the result it gets back once the middleware returns,
		// and the record is of the result as the tool returned it.
		cp := *res
		p.resultValue = &cp
	default:
		p.result, _ = json.Marshal(res)
	}
	if c.span.IsRecording() {
		// The span names its record; otherwise the sealer makes the id.
		p.rec = h.recordOf(p)
		p.rec.RecordID = newRecordID()
		h.annotate(c, p.rec)
		p.call = nil
	}
	return p
}

// recordOf makes a call's record from what pendingOf took. The call is
// no longer changed by anyone once pendingOf ran, so the sealer reads it.
func (h *Hook) recordOf(p pending) *schemas.CallRecord {
	c := p.call
	// A map of the record's own: the call's may still be read by a
	// panic's recovery on the call's path (recovered).
	attrs := make(map[string]string, len(c.attrs)+1)
	maps.Copy(attrs, c.attrs)
	attrs["proofline.hook"] = c.side
	r := &schemas.CallRecord{
		TSStart:     schemas.Timestamp{Time: c.start},
		TSEnd:       schemas.Timestamp{Time: p.end},
		Actor:       schemas.Actor{ID: c.identity.ID, Type: c.identity.Type, OnBehalfOf: c.identity.OnBehalfOf},
		Tool:        schemas.Tool{Name: c.target, Server: c.server.Name, Version: c.server.Version, Group: c.tool.Group},
		MCP:         &schemas.MCP{Method: c.method, SessionID: c.session, Transport: h.cfg.Transport},
		ScopeGrants: c.identity.Scopes,
		Elevation:   c.identity.Elevation,
		Cost:        c.cost,
		Policy:      schemas.Policy{Decision: c.decision.Effect, Rule: c.decision.Rule, Reason: truncate(c.decision.Reason, 4096)},
		DataClass:   c.tool.DataClass,
		Region:      h.cfg.Region,
		Attributes:  attrs,
		IngestedBy:  h.cfg.Principal,
		Outcome:     p.outcome,
		WorkflowID:  p.workflowID,
		PlanID:      p.planID,
	}
	if r.Policy.Decision == "" {
		r.Policy.Decision = schemas.DecisionAllow
	}
	if r.Tool.Name == "" {
		r.Tool.Name = c.method
	}
	if c.sc.IsValid() {
		r.Trace = &schemas.Trace{TraceID: c.sc.TraceID().String(), SpanID: c.sc.SpanID().String()}
		if c.parent.IsValid() && c.parent.TraceID() == c.sc.TraceID() {
			r.Trace.ParentSpanID = c.parent.SpanID().String()
		}
	}
	return r
}

// isNil reports whether a result is nil or a typed nil pointer: handlers
// return (nil, err) with their own result type, which makes a non-nil
// mcp.Result holding a nil pointer.
func isNil(res mcp.Result) bool {
	if res == nil {
		return true
	}
	v := reflect.ValueOf(res)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// pending is a record still to be sealed: made (when rec is nil, from
// call and the rest), digested, canonicalized, validated and handed to
// the outbox.
type pending struct {
	rec  *schemas.CallRecord
	call *call
	// end, outcome, workflowID and planID are the record's, read on the
	// call's path.
	end                time.Time
	outcome            schemas.Outcome
	workflowID, planID string
	args, result       []byte
	// resultValue, when set, is serialized into result by the sealer.
	resultValue any
}

// seal finishes a record off the call's path when it can: hashing and
// canonicalizing take tens of microseconds the caller should not wait
// for. When the sealer is behind (or closed), the call does it itself.
func (h *Hook) seal(ctx context.Context, p pending) {
	if !h.sealq.put(p) {
		h.complete(ctx, p)
	}
}

func (h *Hook) complete(ctx context.Context, p pending) {
	defer func() {
		// Sealing runs on the sealer goroutine too, where a panic (a
		// result whose MarshalJSON panics) would end the process.
		if v := recover(); v != nil {
			tool := ""
			if p.rec != nil {
				tool = p.rec.Tool.Name
			} else if p.call != nil {
				tool = p.call.target
			}
			h.log.ErrorContext(ctx, "mcphook: sealing a call record panicked; not recorded", "tool", tool, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	if p.rec == nil {
		p.rec = h.recordOf(p)
	}
	r := p.rec
	if r.RecordID == "" {
		r.RecordID = newRecordID()
	}
	if p.resultValue != nil {
		p.result, _ = json.Marshal(p.resultValue)
	}
	if hasArgs(p.args) {
		r.ArgsSHA256 = digest(p.args)
	}
	if len(p.result) > 0 {
		r.ResultSHA256 = digest(p.result)
	}
	data, err := r.Seal()
	if err != nil {
		h.log.ErrorContext(ctx, "mcphook: call record is invalid; not recorded", "tool", r.Tool.Name, "err", err)
		return
	}
	if err := h.cfg.Outbox.Enqueue(publish.Message{RecordID: r.RecordID, Data: data}); err != nil {
		h.log.ErrorContext(ctx, "mcphook: call record dropped", "record_id", r.RecordID, "err", err)
	}
}

// Close hands every record still being sealed to the outbox. Close the
// hook before its outbox, after the server stopped taking calls; calls
// finishing later still record, sealing their records themselves.
func (h *Hook) Close(ctx context.Context) error {
	// The budgets' last sync first: this process's usage must reach the
	// store before it goes. The sealer is closed either way.
	budErr := h.bud.close(ctx)
	h.runner.close()
	h.sealq.close()
	select {
	case <-h.sealq.done:
		return budErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newRecordID is a UUIDv7: unique, and roughly in time order, which keeps
// the span store's and the log index's inserts local.
func newRecordID() string {
	if id, err := uuid.NewV7(); err == nil {
		return id.String()
	}
	return fmt.Sprintf("mcphook-%d-%d", time.Now().UnixNano(), rand.Uint64())
}

// statusOf classifies a failed call from the error the caller got: the
// hook's own refusals keep their meaning on the client side too.
func statusOf(err error) string {
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		switch we.Code {
		case CodePolicyDenied, CodeRateLimited, CodeIdempotencyRequired, CodeBudgetExceeded:
			return schemas.StatusPolicyBlocked
		case CodeTimeout:
			return schemas.StatusTimeout
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return schemas.StatusTimeout
	}
	return schemas.StatusSystemError
}

// breakerStatus is what a call that a breaker let through says about
// the tool's health: its outcome status, or "" when it says nothing (the
// hook's own concurrency cap refused it, the caller went away).
func breakerStatus(res mcp.Result, err error) string {
	if err == nil {
		if tr, ok := res.(*mcp.CallToolResult); ok && tr != nil && tr.IsError {
			return schemas.StatusToolError
		}
		return schemas.StatusOK
	}
	var rf *refusal
	switch {
	case errors.As(err, &rf):
		// Of the hook's refusals only a timeout is the tool's doing.
		if rf.code != CodeTimeout {
			return ""
		}
		return rf.status
	case errors.Is(err, context.Canceled):
		return ""
	default:
		return statusOf(err)
	}
}

// annotate sets the span's attributes (OpenTelemetry semantic conventions
// for MCP and GenAI tool execution, plus proofline's own) and status.
func (h *Hook) annotate(c *call, r *schemas.CallRecord) {
	if !c.span.IsRecording() {
		// No tracing SDK, or not sampled: the attributes would be dropped.
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("mcp.method.name", c.method),
		attribute.String("actor.id", r.Actor.ID),
		attribute.String("actor.type", r.Actor.Type),
		attribute.String("policy.decision", r.Policy.Decision),
		attribute.String("proofline.record_id", r.RecordID),
	}
	if c.session != "" {
		attrs = append(attrs, attribute.String("mcp.session.id", c.session))
	}
	if e := r.Elevation; e != nil {
		// The collector exporter's names: a span it maps keeps the elevation.
		attrs = append(attrs, attribute.StringSlice("elevation.scopes", e.Scopes))
		if e.Approver != "" {
			attrs = append(attrs, attribute.String("elevation.approver", e.Approver))
		}
	}
	if len(r.ScopeGrants) > 0 {
		attrs = append(attrs, attribute.StringSlice("scope.grants", r.ScopeGrants))
	}
	if r.Policy.Rule != "" {
		attrs = append(attrs, attribute.String("policy.rule", r.Policy.Rule))
	}
	switch c.method {
	case "tools/call":
		attrs = append(attrs, attribute.String("gen_ai.operation.name", "execute_tool"), attribute.String("gen_ai.tool.name", c.target))
	case "resources/read":
		attrs = append(attrs, attribute.String("mcp.resource.uri", c.target))
	case "prompts/get":
		attrs = append(attrs, attribute.String("gen_ai.prompt.name", c.target))
	}
	if r.Tool.Group != "" {
		attrs = append(attrs, attribute.String("tool.group", r.Tool.Group))
	}
	c.span.SetAttributes(attrs...)
	if r.Outcome.Status != schemas.StatusOK {
		c.span.SetAttributes(attribute.String("error.type", r.Outcome.Status))
		c.span.SetStatus(codes.Error, r.Outcome.ErrorMessage)
	}
}

// digest is the SHA-256 of a JSON value's RFC 8785 canonical form, so the
// same arguments give the same digest whatever key order or spacing the
// client used; bytes that are not JSON are hashed as they are.
func digest(b []byte) string {
	if c, err := jcs.Transform(b); err == nil {
		b = c
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// hasArgs reports whether a call had arguments: absent and JSON null both
// mean none, on either side, so neither record carries a digest of
// "null" while the other carries none; {} is arguments (empty ones).
func hasArgs(raw []byte) bool {
	b := bytes.TrimSpace(raw)
	return len(b) > 0 && !bytes.Equal(b, []byte("null"))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary: records must be valid UTF-8.
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// metaCarrier lets the W3C propagator read and write _meta.
type metaCarrier mcp.Meta

func (m metaCarrier) Get(key string) string {
	v, _ := m[key].(string)
	return v
}

func (m metaCarrier) Set(key, value string) { m[key] = value }

func (m metaCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func marshalArgs(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return raw, nil
	}
	return json.Marshal(v)
}

// StartPlan starts an agent.plan span: wrap an agent's planning step and
// the tool calls it makes, so that the plan and its calls form one subtree
// of the trace. Tool calls made with the returned context carry planID in
// their records' plan_id when the client hook is used.
func StartPlan(ctx context.Context, tp trace.TracerProvider, planID string) (context.Context, trace.Span) {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	ctx, span := tp.Tracer("github.com/proofline/proofline/ingest/mcphook").Start(ctx, "agent.plan",
		trace.WithAttributes(attribute.String("gen_ai.operation.name", "plan"), attribute.String("proofline.plan_id", planID)))
	return context.WithValue(ctx, planKey{}, planID), span
}

type planKey struct{}

// planFrom is the plan id StartPlan put in ctx.
func planFrom(ctx context.Context) string {
	id, _ := ctx.Value(planKey{}).(string)
	return id
}
