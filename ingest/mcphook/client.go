package mcphook

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/proofline/proofline/ingest/mcphook/policy"
	"github.com/proofline/proofline/schemas"
)

// ClientMiddleware is the sending middleware for an mcp.Client: the agent
// side of a call. It starts a client span for each tools/call (the
// server's span becomes its child), writes the trace context into the
// request's _meta so the server continues the trace, and records the call
// as the agent saw it — useful when the server is not yours to hook.
// (When both sides are hooked each records the call, marked by the
// proofline.hook attribute; count one side in KPIs.)
//
// A configured policy is evaluated here too, before the request leaves
// the agent, on the same variables as on the server side: tool.server and
// tool.version are the server's (from its initialize answer), and
// session.tools the tools this client session called before.
//
// Like the server side, it never panics into the agent: a panic while
// handling a call is logged, recorded (system_error) and returned as a
// JSON-RPC internal error.
func (h *Hook) ClientMiddleware(id Identity) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			p, ok := req.GetParams().(*mcp.CallToolParams)
			if method != "tools/call" || !ok || p == nil {
				return next(ctx, method, req)
			}
			return h.clientCall(ctx, id, p, req, next)
		}
	}
}

func (h *Hook) clientCall(ctx context.Context, id Identity, p *mcp.CallToolParams, req mcp.Request, next mcp.MethodHandler) (res mcp.Result, err error) {
	method := "tools/call"
	c := h.newCall(method, "client")
	defer func() {
		if v := recover(); v != nil {
			res, err = h.recovered(ctx, c, v, debug.Stack())
		}
		c.span.End()
	}()
	c.target, c.identity, c.tool = p.Name, id, h.cfg.Tools[p.Name]
	cs, _ := req.GetSession().(*mcp.ClientSession)
	c.server = h.cfg.Server
	if cs != nil {
		c.session = cs.ID()
		if ir := cs.InitializeResult(); ir != nil && ir.ServerInfo != nil {
			c.server = ServerInfo{Name: ir.ServerInfo.Name, Version: ir.ServerInfo.Version}
		}
		// stdio and in-memory sessions have no id, and an agent may hold
		// several at once: the history is the session object's.
		c.history = fmt.Sprintf("client:%p", cs)
	}
	ctx = h.startSpan(ctx, c, method+" "+p.Name, trace.SpanKindClient)
	// The caller's params stay untouched (it may reuse them, from
	// several goroutines): the request carries a copy with our _meta.
	cp := *p
	cp.Meta = maps.Clone(p.Meta)
	if cp.Meta == nil {
		cp.Meta = mcp.Meta{}
	}
	p = &cp
	req = &mcp.ClientRequest[*mcp.CallToolParams]{Session: cs, Params: p}
	h.prop.Inject(ctx, metaCarrier(p.Meta))
	if plan := planFrom(ctx); plan != "" {
		if _, set := p.Meta[MetaPlanID]; !set {
			p.Meta[MetaPlanID] = plan
		}
	}
	if id.Elevation != nil {
		// The server's hook reads it with ElevationFromMeta.
		if _, set := p.Meta[MetaElevation]; !set {
			p.Meta[MetaElevation] = elevationMeta(id.Elevation)
		}
	}
	c.meta = p.Meta
	if args, err := marshalArgs(p.Arguments); err == nil {
		c.rawArgs = args
	}
	h.decide(ctx, c)
	if c.decision.Enforced && c.decision.Effect == policy.Deny {
		return h.refuse(ctx, c, schemas.StatusPolicyBlocked, CodePolicyDenied, "denied by policy "+c.decision.Rule+": "+c.decision.Reason)
	}
	res, err = safeNext(ctx, method, req, next)
	var pe *panicError
	if errors.As(err, &pe) {
		return h.recovered(ctx, c, pe.value, pe.stack)
	}
	if h.cfg.Policy != nil && h.cfg.Policy.Reads("session") && !refusedByHook(err) {
		h.hist.add(c.history, c.target)
	}
	h.finish(ctx, c, res, err, "")
	return res, err
}

// refusedByHook reports whether a server's hook refused the call before
// it ran (the server side keeps such calls out of the session's history
// too).
func refusedByHook(err error) bool {
	var we *jsonrpc.Error
	if !errors.As(err, &we) {
		return false
	}
	switch we.Code {
	case CodePolicyDenied, CodeRateLimited, CodeOverloaded, CodeTimeout, CodeIdempotencyRequired, CodeRecordingUnavailable, CodeCircuitOpen, CodeBudgetExceeded:
		return true
	}
	return false
}
