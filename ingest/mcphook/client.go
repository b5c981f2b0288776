package mcphook

import (
	"context"
	"maps"

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
// the agent.
func (h *Hook) ClientMiddleware(id Identity) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			p, ok := req.GetParams().(*mcp.CallToolParams)
			if method != "tools/call" || !ok {
				return next(ctx, method, req)
			}
			c := &call{start: h.now(), method: method, target: p.Name, identity: id, tool: h.cfg.Tools[p.Name],
				attrs: map[string]string{"proofline.hook": "client"}}
			if s := req.GetSession(); s != nil {
				c.session = s.ID()
			}
			ctx = h.startSpan(ctx, c, method+" "+p.Name, trace.SpanKindClient)
			defer c.span.End()
			// The caller's params stay untouched (it may reuse them, from
			// several goroutines): the request carries a copy with our _meta.
			cp := *p
			cp.Meta = maps.Clone(p.Meta)
			if cp.Meta == nil {
				cp.Meta = mcp.Meta{}
			}
			p = &cp
			cs, _ := req.GetSession().(*mcp.ClientSession)
			req = &mcp.ClientRequest[*mcp.CallToolParams]{Session: cs, Params: p}
			h.prop.Inject(ctx, metaCarrier(p.Meta))
			if plan := planFrom(ctx); plan != "" {
				if _, set := p.Meta[MetaPlanID]; !set {
					p.Meta[MetaPlanID] = plan
				}
			}
			c.meta = p.Meta
			if args, err := marshalArgs(p.Arguments); err == nil {
				c.rawArgs = args
			}
			c.decision = policy.Decision{Effect: policy.Allow, Enforced: true}
			if h.cfg.Policy != nil {
				in := policy.Input{
					Actor:  policy.Actor{ID: id.ID, Type: id.Type, OnBehalfOf: id.OnBehalfOf},
					Tool:   policy.Tool{Name: p.Name, Group: c.tool.Group, Write: c.tool.Write},
					Method: method, Scopes: id.Scopes, DataClass: c.tool.DataClass,
				}
				if h.cfg.Policy.Reads("args") {
					in.Args = c.decodeArgs()
				}
				d, err := h.cfg.Policy.Evaluate(in)
				if err != nil {
					h.log.WarnContext(ctx, "mcphook: policy rule failed to evaluate", "tool", p.Name, "err", err)
				}
				c.decision = d
				if c.decision.Enforced && c.decision.Effect == policy.Deny {
					return h.refuse(ctx, c, schemas.StatusPolicyBlocked, CodePolicyDenied, "denied by policy "+c.decision.Rule+": "+c.decision.Reason)
				}
			}
			res, err := next(ctx, method, req)
			h.finish(ctx, c, res, err, "")
			return res, err
		}
	}
}
