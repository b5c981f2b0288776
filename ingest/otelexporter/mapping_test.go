package otelexporter

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/proofline/proofline/schemas"
)

var (
	t0      = time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	traceID = pcommon.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	spanID  = pcommon.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	parent  = pcommon.SpanID{0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8}
)

const (
	wantRecordID = "otel-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
	argsDigest   = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	rawArgs      = `{"query":"password reset for alice@example.com"}`
)

// spanSpec describes a span and its resource for the table tests.
type spanSpec struct {
	name      string
	kind      ptrace.SpanKind
	attrs     map[string]any
	resource  map[string]any
	status    ptrace.StatusCode
	statusMsg string
	start     time.Time
	end       time.Time
	noIDs     bool
}

func putAll(m pcommon.Map, kv map[string]any) {
	for k, v := range kv {
		switch x := v.(type) {
		case string:
			m.PutStr(k, x)
		case int:
			m.PutInt(k, int64(x))
		case float64:
			m.PutDouble(k, x)
		case bool:
			m.PutBool(k, x)
		case []string:
			s := m.PutEmptySlice(k)
			for _, e := range x {
				s.AppendEmpty().SetStr(e)
			}
		default:
			panic("unsupported attribute type")
		}
	}
}

// addSpan appends a span built from sp to td, under its own resource.
func addSpan(td ptrace.Traces, sp spanSpec) ptrace.Span {
	rs := td.ResourceSpans().AppendEmpty()
	putAll(rs.Resource().Attributes(), sp.resource)
	span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetName(sp.name)
	span.SetKind(sp.kind)
	if !sp.noIDs {
		span.SetTraceID(traceID)
		span.SetSpanID(spanID)
	}
	span.SetParentSpanID(parent)
	start, end := sp.start, sp.end
	if start.IsZero() {
		start = t0
	}
	if end.IsZero() {
		end = start.Add(250 * time.Millisecond)
	}
	span.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	span.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	span.Status().SetCode(sp.status)
	span.Status().SetMessage(sp.statusMsg)
	putAll(span.Attributes(), sp.attrs)
	return span
}

// mcpCall is a fully attributed MCP client span of a tool call.
func mcpCall() spanSpec {
	return spanSpec{
		name: "tools/call search_tickets",
		kind: ptrace.SpanKindClient,
		attrs: map[string]any{
			"gen_ai.operation.name":      "execute_tool",
			"gen_ai.tool.name":           "search_tickets",
			"gen_ai.tool.call.id":        "call_42",
			"gen_ai.tool.call.arguments": rawArgs,
			"mcp.method.name":            "tools/call",
			"mcp.session.id":             "s-1",
			"jsonrpc.request.id":         42,
			"network.transport":          "tcp",
			"actor.id":                   "agent-7",
			"actor.type":                 "agent",
			"actor.on_behalf_of":         "alice@example.com",
			"scope.grants":               []string{"tickets:read", "tickets:search"},
			"policy.decision":            "allow",
			"policy.rule":                "default-allow",
			"tool.group":                 "ticketing",
			"tool.server":                "jira-mcp",
			"tool.version":               "1.4.0",
			"workflow.id":                "wf-support",
			"plan.id":                    "plan-9",
			"proofline.args_sha256":      strings.ToUpper(argsDigest),
			"proofline.result_sha256":    strings.Repeat("ab", 32),
			"cost.amount":                0.0125,
			"cost.currency":              "usd",
			"gen_ai.usage.input_tokens":  120,
			"gen_ai.usage.output_tokens": "48",
			"data.class":                 "internal",
		},
		resource: map[string]any{"service.name": "support-agent", "cloud.region": "eu-west-1"},
	}
}

func with(sp spanSpec, kv map[string]any) spanSpec {
	attrs := make(map[string]any, len(sp.attrs)+len(kv))
	for k, v := range sp.attrs {
		attrs[k] = v
	}
	for k, v := range kv {
		if v == nil {
			delete(attrs, k)
			continue
		}
		attrs[k] = v
	}
	sp.attrs = attrs
	return sp
}

func mapOne(t *testing.T, cfg *Config, sp spanSpec) (*schemas.CallRecord, bool, error) {
	t.Helper()
	td := ptrace.NewTraces()
	span := addSpan(td, sp)
	return NewMapper(cfg).MapSpan(td.ResourceSpans().At(0).Resource(), span)
}

func testConfig() *Config {
	c := createDefaultConfig().(*Config)
	c.NATSURL = "nats://127.0.0.1:4222"
	c.Principal = "collector-1"
	return c
}

func TestMapFullMCPCall(t *testing.T) {
	rec, ok, err := mapOne(t, testConfig(), mcpCall())
	if !ok || err != nil {
		t.Fatalf("MapSpan = ok %v, err %v", ok, err)
	}
	want := &schemas.CallRecord{
		RecordID:    wantRecordID,
		TSStart:     schemas.Timestamp{Time: t0},
		TSEnd:       schemas.Timestamp{Time: t0.Add(250 * time.Millisecond)},
		Actor:       schemas.Actor{ID: "agent-7", Type: "agent", OnBehalfOf: "alice@example.com"},
		Tool:        schemas.Tool{Name: "search_tickets", Server: "jira-mcp", Version: "1.4.0", Group: "ticketing"},
		MCP:         &schemas.MCP{Method: "tools/call", SessionID: "s-1", RequestID: "42", Transport: "http"},
		Trace:       &schemas.Trace{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", ParentSpanID: "53995c3f42cd8ad8"},
		ScopeGrants: []string{"tickets:read", "tickets:search"},
		Policy:      schemas.Policy{Decision: "allow", Rule: "default-allow"},
		Outcome:     schemas.Outcome{Status: "ok"},
		ArgsSHA256:  argsDigest, ResultSHA256: strings.Repeat("ab", 32),
		Cost:       &schemas.Cost{Amount: 0.0125, Currency: "USD", TokensIn: 120, TokensOut: 48},
		WorkflowID: "wf-support", PlanID: "plan-9", Region: "eu-west-1", DataClass: "internal",
		Attributes: map[string]string{"gen_ai.tool.call.id": "call_42"},
		IngestedBy: "collector-1",
	}
	got, err := rec.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	exp, err := want.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, exp) {
		t.Fatalf("record\n got %s\nwant %s", got, exp)
	}
	if _, ok := schemas.IsCanonicalRecord(got); !ok {
		t.Fatalf("not a canonical record: %s", got)
	}
	if bytes.Contains(got, []byte("password reset")) {
		t.Fatalf("raw arguments leaked into the record: %s", got)
	}
}

func TestMapSpanTable(t *testing.T) {
	rawDigest := sha256.Sum256([]byte(rawArgs))
	tests := []struct {
		name     string
		cfg      func(c *Config)
		span     spanSpec
		wantSkip bool
		wantErr  string
		check    func(t *testing.T, r *schemas.CallRecord)
	}{
		{name: "unrelated http span is ignored", span: spanSpec{name: "GET /healthz", kind: ptrace.SpanKindServer,
			attrs: map[string]any{"http.request.method": "GET", "actor.id": "x"}, resource: map[string]any{"service.name": "api"}}, wantSkip: true},
		{name: "mcp initialize is not a tool call", span: spanSpec{name: "initialize", attrs: map[string]any{"mcp.method.name": "initialize", "actor.id": "a"}}, wantSkip: true},
		{name: "tool-call attributes on the resource only do not match", span: spanSpec{name: "work",
			resource: map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "x"}}, wantSkip: true},
		{name: "genai execute_tool: actor from agent id, digest of raw arguments, name from span name",
			span: spanSpec{name: "execute_tool get_weather", kind: ptrace.SpanKindInternal, attrs: map[string]any{
				"gen_ai.operation.name": "execute_tool", "gen_ai.agent.id": "asst_5", "gen_ai.tool.call.arguments": rawArgs,
				"user.id": "bob"}},
			check: func(t *testing.T, r *schemas.CallRecord) {
				if r.Tool.Name != "get_weather" || r.Actor != (schemas.Actor{ID: "asst_5", Type: "agent", OnBehalfOf: "bob"}) {
					t.Errorf("tool %+v actor %+v", r.Tool, r.Actor)
				}
				if r.ArgsSHA256 != hex.EncodeToString(rawDigest[:]) || r.MCP != nil || r.Cost != nil {
					t.Errorf("args %q mcp %+v cost %+v", r.ArgsSHA256, r.MCP, r.Cost)
				}
			}},
		{name: "mcp tools/call without gen_ai.tool.name: name from span name, stdio transport",
			span: spanSpec{name: "tools/call read_file", attrs: map[string]any{"mcp.method.name": "tools/call", "network.transport": "pipe", "actor.id": "a1"}},
			check: func(t *testing.T, r *schemas.CallRecord) {
				if r.Tool.Name != "read_file" || r.MCP.Transport != "stdio" || r.Actor.Type != "agent" {
					t.Errorf("tool %+v mcp %+v actor %+v", r.Tool, r.MCP, r.Actor)
				}
			}},
		{name: "server span: tool server is the resource's service, actor the calling user",
			span: spanSpec{name: "tools/call x", kind: ptrace.SpanKindServer, attrs: map[string]any{"gen_ai.tool.name": "x", "enduser.id": "carol"},
				resource: map[string]any{"service.name": "files-mcp"}},
			check: func(t *testing.T, r *schemas.CallRecord) {
				if r.Tool.Server != "files-mcp" || r.Actor != (schemas.Actor{ID: "carol", Type: "user"}) {
					t.Errorf("tool %+v actor %+v", r.Tool, r.Actor)
				}
			}},
		{name: "service actor from the resource", span: spanSpec{name: "t", kind: ptrace.SpanKindClient,
			attrs: map[string]any{"gen_ai.tool.name": "t"}, resource: map[string]any{"service.name": "batch-job"}},
			check: func(t *testing.T, r *schemas.CallRecord) {
				if r.Actor != (schemas.Actor{ID: "batch-job", Type: "service"}) || r.Tool.Server != "" {
					t.Errorf("actor %+v tool %+v", r.Actor, r.Tool)
				}
			}},
		{name: "scope grants as one comma-separated string", span: with(mcpCall(), map[string]any{"scope.grants": "a:read, b:write,,"}),
			check: func(t *testing.T, r *schemas.CallRecord) {
				if strings.Join(r.ScopeGrants, "|") != "a:read|b:write" {
					t.Errorf("grants %q", r.ScopeGrants)
				}
			}},
		{name: "elevation", span: with(mcpCall(), map[string]any{"elevation.scopes": []string{"payments:write"}, "elevation.approver": "bob@example.com",
			"elevation.reason": "INC-7", "elevation.expires": "2026-12-01T12:00:00+01:00"}),
			check: func(t *testing.T, r *schemas.CallRecord) {
				e := r.Elevation
				if e == nil || strings.Join(e.Scopes, ",") != "payments:write" || e.Approver != "bob@example.com" || e.Reason != "INC-7" ||
					e.Expires == nil || !e.Expires.Equal(time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)) {
					t.Errorf("elevation %+v", e)
				}
			}},
		{name: "elevation approver without scopes", span: with(mcpCall(), map[string]any{"elevation.approver": "bob"}), wantErr: "without elevation.scopes"},
		{name: "elevation expiry not a time", span: with(mcpCall(), map[string]any{"elevation.scopes": "a", "elevation.expires": "soon"}), wantErr: "elevation.expires"},
		{name: "error status, error.type timeout", span: func() spanSpec {
			s := with(mcpCall(), map[string]any{"error.type": "DeadlineExceeded"})
			s.status, s.statusMsg = ptrace.StatusCodeError, "upstream took too long"
			return s
		}(), check: func(t *testing.T, r *schemas.CallRecord) {
			if r.Outcome != (schemas.Outcome{Status: "timeout", ErrorCode: "DeadlineExceeded", ErrorMessage: "upstream took too long"}) {
				t.Errorf("outcome %+v", r.Outcome)
			}
		}},
		{name: "error status with a JSON-RPC error code is a system error", span: func() spanSpec {
			s := with(mcpCall(), map[string]any{"rpc.response.status_code": "-32603"})
			s.status = ptrace.StatusCodeError
			return s
		}(), check: func(t *testing.T, r *schemas.CallRecord) {
			if r.Outcome.Status != "system_error" || r.Outcome.ErrorCode != "-32603" {
				t.Errorf("outcome %+v", r.Outcome)
			}
		}},
		{name: "error status, tool error result", span: func() spanSpec {
			s := with(mcpCall(), map[string]any{"error.type": "tool_error"})
			s.status, s.statusMsg = ptrace.StatusCodeError, "ticket not found"
			return s
		}(), check: func(t *testing.T, r *schemas.CallRecord) {
			if r.Outcome != (schemas.Outcome{Status: "tool_error", ErrorCode: "tool_error", ErrorMessage: "ticket not found"}) {
				t.Errorf("outcome %+v", r.Outcome)
			}
		}},
		{name: "span already recorded by the MCP hook is ignored", span: with(mcpCall(), map[string]any{"proofline.record_id": "0193a1c2-7b7e-7d6f-9b8a-2f1e0c4d5a6b"}), wantSkip: true},
		{name: "error.type naming an outcome status (as the MCP hook sets it)", span: func() spanSpec {
			s := with(mcpCall(), map[string]any{"error.type": "policy_blocked"})
			s.status = ptrace.StatusCodeError
			return s
		}(), check: func(t *testing.T, r *schemas.CallRecord) {
			if r.Outcome.Status != "policy_blocked" || r.Outcome.ErrorCode != "policy_blocked" {
				t.Errorf("outcome %+v", r.Outcome)
			}
		}},
		{name: "error status without details is a tool error", span: func() spanSpec { s := mcpCall(); s.status = ptrace.StatusCodeError; return s }(),
			check: func(t *testing.T, r *schemas.CallRecord) {
				if r.Outcome != (schemas.Outcome{Status: "tool_error"}) {
					t.Errorf("outcome %+v", r.Outcome)
				}
			}},
		{name: "policy deny is policy_blocked", span: with(mcpCall(), map[string]any{"policy.decision": "DENY", "policy.rule": "no-writes", "policy.reason": "read-only"}),
			check: func(t *testing.T, r *schemas.CallRecord) {
				if r.Outcome.Status != "policy_blocked" || r.Policy != (schemas.Policy{Decision: "deny", Rule: "no-writes", Reason: "read-only"}) {
					t.Errorf("outcome %+v policy %+v", r.Outcome, r.Policy)
				}
			}},
		{name: "explicit policy_blocked outcome without a decision implies deny", span: with(mcpCall(), map[string]any{"policy.decision": nil, "outcome.status": "policy_blocked", "outcome.error_code": "DENY_WRITE"}),
			check: func(t *testing.T, r *schemas.CallRecord) {
				if r.Policy.Decision != "deny" || r.Outcome.Status != "policy_blocked" || r.Outcome.ErrorCode != "DENY_WRITE" {
					t.Errorf("outcome %+v policy %+v", r.Outcome, r.Policy)
				}
			}},
		{name: "unknown outcome.status falls back to the span status", span: with(mcpCall(), map[string]any{"outcome.status": "fine"}),
			check: func(t *testing.T, r *schemas.CallRecord) {
				if r.Outcome.Status != "ok" {
					t.Errorf("outcome %+v", r.Outcome)
				}
			}},
		{name: "long error message is cut on a rune boundary", span: func() spanSpec {
			s := mcpCall()
			s.status, s.statusMsg = ptrace.StatusCodeError, strings.Repeat("é", 3000)
			return s
		}(), check: func(t *testing.T, r *schemas.CallRecord) {
			if len(r.Outcome.ErrorMessage) != 4096 || !strings.HasSuffix(r.Outcome.ErrorMessage, "é") {
				t.Errorf("message of %d bytes", len(r.Outcome.ErrorMessage))
			}
		}},
		{name: "copy_attributes from span and resource", cfg: func(c *Config) { c.CopyAttributes = []string{"service.name", "gen_ai.tool.call.id", "absent"} },
			span: mcpCall(), check: func(t *testing.T, r *schemas.CallRecord) {
				if len(r.Attributes) != 2 || r.Attributes["service.name"] != "support-agent" || r.Attributes["gen_ai.tool.call.id"] != "call_42" {
					t.Errorf("attributes %v", r.Attributes)
				}
			}},
		{name: "include_unmatched records any span", cfg: func(c *Config) { c.IncludeUnmatched = true },
			span: spanSpec{name: "GET /healthz", resource: map[string]any{"service.name": "api"}},
			check: func(t *testing.T, r *schemas.CallRecord) {
				if r.Tool.Name != "GET /healthz" || r.Actor.ID != "api" {
					t.Errorf("tool %+v actor %+v", r.Tool, r.Actor)
				}
			}},
		{name: "required_attribute missing", cfg: func(c *Config) { c.RequiredAttribute = "proofline.evidence" }, span: mcpCall(), wantSkip: true},
		{name: "required_attribute on the resource", cfg: func(c *Config) { c.RequiredAttribute = "proofline.evidence" },
			span:  func() spanSpec { s := mcpCall(); s.resource = map[string]any{"proofline.evidence": true}; return s }(),
			check: func(t *testing.T, r *schemas.CallRecord) {}},
		{name: "no actor anywhere", span: spanSpec{name: "x", attrs: map[string]any{"gen_ai.tool.name": "x"}}, wantErr: "no actor"},
		{name: "no ids", span: func() spanSpec { s := mcpCall(); s.noIDs = true; return s }(), wantErr: "no trace id"},
		{name: "ends before it starts", span: func() spanSpec { s := mcpCall(); s.start, s.end = t0, t0.Add(-time.Second); return s }(), wantErr: "before it starts"},
		{name: "cost amount not a number", span: with(mcpCall(), map[string]any{"cost.amount": "cheap"}), wantErr: "cost.amount"},
		{name: "tokens not an integer", span: with(mcpCall(), map[string]any{"gen_ai.usage.input_tokens": 1.5}), wantErr: "not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(cfg)
			}
			rec, ok, err := mapOne(t, cfg, tt.span)
			if tt.wantSkip {
				if ok {
					t.Fatalf("span was mapped (%+v, %v), want ignored", rec, err)
				}
				return
			}
			if !ok {
				t.Fatal("span ignored, want a tool call")
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("MapSpan error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("MapSpan: %v", err)
			}
			data, err := encode(rec)
			if err != nil {
				t.Fatalf("record does not validate: %v", err)
			}
			if _, ok := schemas.IsCanonicalRecord(data); !ok {
				t.Fatalf("not canonical: %s", data)
			}
			if bytes.Contains(data, []byte("password reset")) {
				t.Fatalf("raw arguments in the record: %s", data)
			}
			tt.check(t, rec)
		})
	}
}

// TestMapBatch maps a whole ptrace.Traces: record ids are stable and
// valid, the same span twice is one message, unrelated spans are counted
// as ignored and invalid records listed, and every message is what the
// signer accepts.
func TestMapBatch(t *testing.T) {
	td := ptrace.NewTraces()
	addSpan(td, mcpCall())
	addSpan(td, mcpCall()) // the same span again (a retried export)
	addSpan(td, spanSpec{name: "GET /", attrs: map[string]any{"http.request.method": "GET"}})
	second := addSpan(td, with(mcpCall(), map[string]any{"gen_ai.tool.name": "create_ticket"}))
	second.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	bad := addSpan(td, with(mcpCall(), map[string]any{"proofline.args_sha256": "not-a-digest"}))
	bad.SetSpanID(pcommon.SpanID{9, 9, 9, 9, 9, 9, 9, 9})

	b := NewMapper(testConfig()).Map(td)
	if len(b.Messages) != 2 || b.Repeated != 1 || b.Ignored != 1 || len(b.Invalid) != 1 {
		t.Fatalf("messages %d repeated %d ignored %d invalid %d, want 2 1 1 1", len(b.Messages), b.Repeated, b.Ignored, len(b.Invalid))
	}
	if b.Invalid[0].RecordID != "otel-4bf92f3577b34da6a3ce929d0e0e4736-0909090909090909" ||
		!strings.Contains(b.Invalid[0].Err.Error(), "args_sha256") {
		t.Fatalf("invalid: %+v", b.Invalid[0])
	}
	idPattern := regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	wantIDs := []string{wantRecordID, "otel-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708"}
	for i, m := range b.Messages {
		if m.RecordID != wantIDs[i] || !idPattern.MatchString(m.RecordID) {
			t.Fatalf("message %d id %q, want %q", i, m.RecordID, wantIDs[i])
		}
		r, ok := schemas.IsCanonicalRecord(m.Data)
		if !ok || r.RecordID != m.RecordID || r.IngestedBy != "collector-1" {
			t.Fatalf("message %d is not the canonical record %s: %s", i, m.RecordID, m.Data)
		}
	}
	// Mapping is deterministic: the same spans give the same bytes.
	again := NewMapper(testConfig()).Map(td)
	for i := range b.Messages {
		if !bytes.Equal(again.Messages[i].Data, b.Messages[i].Data) {
			t.Fatalf("message %d differs between two mappings", i)
		}
	}
}

// TestDigestOfJSONArgumentsIsCanonical: arguments on a span are hashed in
// their RFC 8785 form, as the MCP hook hashes them, so key order and
// spacing do not change the digest.
func TestDigestOfJSONArgumentsIsCanonical(t *testing.T) {
	want := sha256.Sum256([]byte(`{"a":"x","b":1}`))
	for _, raw := range []string{`{"b": 1, "a": "x"}`, `{"a":"x","b":1}`, "{\n  \"b\": 1.0,\n  \"a\": \"x\"\n}"} {
		rec, ok, err := mapOne(t, testConfig(), with(mcpCall(), map[string]any{"gen_ai.tool.call.arguments": raw, "proofline.args_sha256": ""}))
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", raw, ok, err)
		}
		if rec.ArgsSHA256 != hex.EncodeToString(want[:]) {
			t.Errorf("%q hashed to %s, want the digest of its canonical form", raw, rec.ArgsSHA256)
		}
	}
}
