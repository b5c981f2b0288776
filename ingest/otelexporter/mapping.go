package otelexporter

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"

	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/schemas"
)

// Attribute keys. The OpenTelemetry semantic conventions come from the
// semconv package; the rest are proofline's own, named as the span store
// benchmark and the MCP hook name them.
const (
	keyOperationName     = string(semconv.GenAIOperationNameKey)
	keyToolName          = string(semconv.GenAIToolNameKey)
	keyToolCallArguments = string(semconv.GenAIToolCallArgumentsKey)
	keyToolCallResult    = string(semconv.GenAIToolCallResultKey)
	keyAgentID           = string(semconv.GenAIAgentIDKey)
	keyAgentName         = string(semconv.GenAIAgentNameKey)
	keyInputTokens       = string(semconv.GenAIUsageInputTokensKey)
	keyOutputTokens      = string(semconv.GenAIUsageOutputTokensKey)
	keyMCPMethod         = string(semconv.McpMethodNameKey)
	keyMCPSession        = string(semconv.McpSessionIDKey)
	keyJSONRPCRequestID  = string(semconv.JSONRPCRequestIDKey)
	keyRPCStatusCode     = string(semconv.RPCResponseStatusCodeKey)
	keyNetworkTransport  = string(semconv.NetworkTransportKey)
	keyErrorType         = string(semconv.ErrorTypeKey)
	keyServerAddress     = string(semconv.ServerAddressKey)
	keyServiceName       = string(semconv.ServiceNameKey)
	keyUserID            = string(semconv.UserIDKey)
	keyEnduserID         = string(semconv.EnduserIDKey)
	keyCloudRegion       = string(semconv.CloudRegionKey)

	opExecuteTool = "execute_tool"
	mcpToolsCall  = "tools/call"

	// keyRecordID marks a span whose call a producer (the MCP hook) has
	// already recorded under that id.
	keyRecordID       = "proofline.record_id"
	keyActorID        = "actor.id"
	keyActorType      = "actor.type"
	keyActorOnBehalf  = "actor.on_behalf_of"
	keyToolServer     = "tool.server"
	keyToolVersion    = "tool.version"
	keyToolGroup      = "tool.group"
	keyMCPTransport   = "mcp.transport"
	keyScopeGrants    = "scope.grants"
	keyPolicyDecision = "policy.decision"
	keyPolicyRule     = "policy.rule"
	keyPolicyReason   = "policy.reason"
	keyOutcomeStatus  = "outcome.status"
	keyOutcomeCode    = "outcome.error_code"
	keyArgsDigest     = "proofline.args_sha256"
	keyArgsDigestAlt  = "args.sha256"
	keyResultDigest   = "proofline.result_sha256"
	keyResultDigestAl = "result.sha256"
	keyCostAmount     = "cost.amount"
	keyCostCurrency   = "cost.currency"
	keyCostTokensIn   = "cost.tokens_in"
	keyCostTokensOut  = "cost.tokens_out"
	keyWorkflowID     = "workflow.id"
	keyPlanID         = "plan.id"
	keyRegion         = "region"
	keyDataClass      = "data.class"
	keyElevScopes     = "elevation.scopes"
	keyElevApprover   = "elevation.approver"
	keyElevReason     = "elevation.reason"
	keyElevExpires    = "elevation.expires"
)

// Schema limits the mapper truncates to rather than drop a record over:
// free text and short labels. Identifiers are never truncated; one that
// is too long makes the record invalid.
const (
	maxText  = 4096
	maxShort = 128
)

// Mapper turns spans into call records. It holds only configuration and
// is safe for concurrent use.
type Mapper struct {
	principal        string
	includeUnmatched bool
	required         string
	copyAttrs        []string
}

// NewMapper returns the mapper cfg describes.
func NewMapper(cfg *Config) *Mapper {
	return &Mapper{
		principal:        cfg.Principal,
		includeUnmatched: cfg.IncludeUnmatched,
		required:         cfg.RequiredAttribute,
		copyAttrs:        append([]string(nil), cfg.CopyAttributes...),
	}
}

// Invalid is a tool-call span whose record could not be built or failed
// validation.
type Invalid struct {
	RecordID string
	Err      error
}

// Batch is one ptrace.Traces mapped to stream messages.
type Batch struct {
	// Messages are canonical, validated records with distinct ids, in
	// span order.
	Messages []publish.Message
	// Ignored counts spans that are not tool calls.
	Ignored int
	// Repeated counts tool-call spans whose record id already occurred
	// earlier in the same batch (the same span sent twice).
	Repeated int
	// Invalid lists tool-call spans dropped because their record is not
	// a valid call record.
	Invalid []Invalid
}

// Map maps every span of td.
func (m *Mapper) Map(td ptrace.Traces) Batch {
	var b Batch
	seen := map[string]struct{}{}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				span := spans.At(k)
				rec, ok, err := m.MapSpan(rs.Resource(), span)
				if !ok {
					b.Ignored++
					continue
				}
				id := RecordID(span.TraceID(), span.SpanID())
				if _, dup := seen[id]; dup {
					b.Repeated++
					continue
				}
				seen[id] = struct{}{}
				var data []byte
				if err == nil {
					data, err = encode(rec)
				}
				if err != nil {
					b.Invalid = append(b.Invalid, Invalid{RecordID: id, Err: err})
					continue
				}
				b.Messages = append(b.Messages, publish.Message{RecordID: id, Data: data})
			}
		}
	}
	return b
}

// encode returns the record's canonical bytes after checking them as the
// HTTP ingest checks a posted record, so that the stream only ever holds
// what the signer accepts.
func encode(rec *schemas.CallRecord) ([]byte, error) {
	data, err := rec.Seal()
	if err != nil {
		return nil, fmt.Errorf("call record: %w", err)
	}
	return data, nil
}

// RecordID is the record id of a span: stable across re-sends of the same
// span, so a retry is never a second record.
func RecordID(traceID pcommon.TraceID, spanID pcommon.SpanID) string {
	return "otel-" + hex.EncodeToString(traceID[:]) + "-" + hex.EncodeToString(spanID[:])
}

// attrs looks a key up on the span, then on its resource.
type attrs struct{ span, res pcommon.Map }

func (a attrs) get(key string) (pcommon.Value, bool) {
	if v, ok := a.span.Get(key); ok && !isEmpty(v) {
		return v, true
	}
	if v, ok := a.res.Get(key); ok && !isEmpty(v) {
		return v, true
	}
	return pcommon.Value{}, false
}

func isEmpty(v pcommon.Value) bool {
	return v.Type() == pcommon.ValueTypeEmpty || (v.Type() == pcommon.ValueTypeStr && v.Str() == "")
}

// str returns the first of keys that is set, as a string.
func (a attrs) str(keys ...string) string {
	for _, k := range keys {
		if v, ok := a.get(k); ok {
			return v.AsString()
		}
	}
	return ""
}

func (a attrs) int(keys ...string) (int64, error) {
	for _, k := range keys {
		v, ok := a.get(k)
		if !ok {
			continue
		}
		switch v.Type() {
		case pcommon.ValueTypeInt:
			return v.Int(), nil
		case pcommon.ValueTypeDouble:
			f := v.Double()
			if f != math.Trunc(f) || math.Abs(f) > 1e15 {
				return 0, fmt.Errorf("%s: %v is not an integer", k, f)
			}
			return int64(f), nil
		default:
			n, err := strconv.ParseInt(strings.TrimSpace(v.AsString()), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %q is not an integer", k, v.AsString())
			}
			return n, nil
		}
	}
	return 0, nil
}

func (a attrs) float(key string) (float64, error) {
	v, ok := a.get(key)
	if !ok {
		return 0, nil
	}
	switch v.Type() {
	case pcommon.ValueTypeDouble:
		return v.Double(), nil
	case pcommon.ValueTypeInt:
		return float64(v.Int()), nil
	default:
		f, err := strconv.ParseFloat(strings.TrimSpace(v.AsString()), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%s: %q is not a number", key, v.AsString())
		}
		return f, nil
	}
}

func (a attrs) list(key string) []string {
	v, ok := a.get(key)
	if !ok {
		return nil
	}
	var out []string
	if v.Type() == pcommon.ValueTypeSlice {
		s := v.Slice()
		for i := 0; i < s.Len(); i++ {
			if e := strings.TrimSpace(s.At(i).AsString()); e != "" {
				out = append(out, e)
			}
		}
		return out
	}
	for _, e := range strings.Split(v.AsString(), ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// isToolCall looks at the span's own attributes only: a resource
// attribute describes a process, not one call.
func isToolCall(span ptrace.Span) bool {
	at := span.Attributes()
	if v, ok := at.Get(keyOperationName); ok && v.AsString() == opExecuteTool {
		return true
	}
	if v, ok := at.Get(keyMCPMethod); ok && v.AsString() == mcpToolsCall {
		return true
	}
	v, ok := at.Get(keyToolName)
	return ok && v.AsString() != ""
}

// MapSpan maps one span. ok is false when the span is not recorded (not
// a tool call, or without the required attribute); err is set when it is
// a tool call whose record cannot be built.
func (m *Mapper) MapSpan(res pcommon.Resource, span ptrace.Span) (rec *schemas.CallRecord, ok bool, err error) {
	a := attrs{span: span.Attributes(), res: res.Attributes()}
	if _, recorded := span.Attributes().Get(keyRecordID); recorded {
		// Recorded at the source already: a record from this span would
		// be a second, different record of the same call.
		return nil, false, nil
	}
	if !m.includeUnmatched && !isToolCall(span) {
		return nil, false, nil
	}
	if m.required != "" {
		if _, has := a.get(m.required); !has {
			return nil, false, nil
		}
	}
	var errs []error
	if span.TraceID().IsEmpty() || span.SpanID().IsEmpty() {
		errs = append(errs, errors.New("span has no trace id or span id"))
	}
	start, end := span.StartTimestamp(), span.EndTimestamp()
	if start == 0 || end == 0 {
		errs = append(errs, errors.New("span has no start or end time"))
	} else if end < start {
		errs = append(errs, fmt.Errorf("span ends (%s) before it starts (%s)", end, start))
	}

	r := &schemas.CallRecord{
		RecordID:   RecordID(span.TraceID(), span.SpanID()),
		TSStart:    schemas.Timestamp{Time: start.AsTime()},
		TSEnd:      schemas.Timestamp{Time: end.AsTime()},
		Actor:      actor(a),
		Tool:       tool(a, span),
		MCP:        mcp(a),
		Trace:      &schemas.Trace{TraceID: span.TraceID().String(), SpanID: span.SpanID().String(), ParentSpanID: span.ParentSpanID().String()},
		WorkflowID: a.str(keyWorkflowID),
		PlanID:     a.str(keyPlanID),
		Region:     truncate(a.str(keyCloudRegion, keyRegion), maxShort),
		DataClass:  truncate(a.str(keyDataClass), maxShort),
		IngestedBy: m.principal,
	}
	r.ScopeGrants = a.list(keyScopeGrants)
	r.Outcome, r.Policy = outcomeAndPolicy(a, span.Status())
	r.ArgsSHA256 = digest(a, keyToolCallArguments, keyArgsDigest, keyArgsDigestAlt)
	r.ResultSHA256 = digest(a, keyToolCallResult, keyResultDigest, keyResultDigestAl)
	cost, err := costOf(a)
	if err != nil {
		errs = append(errs, err)
	}
	r.Cost = cost
	if r.Elevation, err = elevationOf(a); err != nil {
		errs = append(errs, err)
	}
	for _, k := range m.copyAttrs {
		if v, has := a.get(k); has {
			if r.Attributes == nil {
				r.Attributes = make(map[string]string, len(m.copyAttrs))
			}
			r.Attributes[k] = truncate(v.AsString(), maxText)
		}
	}
	if r.Tool.Name == "" {
		errs = append(errs, fmt.Errorf("no tool name: neither %s nor a span name", keyToolName))
	}
	if r.Actor.ID == "" {
		errs = append(errs, fmt.Errorf("no actor: set %s (or %s, %s, or the resource's %s)", keyActorID, keyAgentID, keyUserID, keyServiceName))
	}
	if len(errs) > 0 {
		return nil, true, errors.Join(errs...)
	}
	return r, true, nil
}

func actor(a attrs) schemas.Actor {
	var act schemas.Actor
	switch {
	case a.str(keyActorID) != "":
		act = schemas.Actor{ID: a.str(keyActorID), Type: strings.ToLower(a.str(keyActorType))}
		if act.Type == "" {
			act.Type = schemas.ActorAgent
		}
	case a.str(keyAgentID, keyAgentName) != "":
		act = schemas.Actor{ID: a.str(keyAgentID, keyAgentName), Type: schemas.ActorAgent}
	case a.str(keyUserID, keyEnduserID) != "":
		act = schemas.Actor{ID: a.str(keyUserID, keyEnduserID), Type: schemas.ActorUser}
	default:
		act = schemas.Actor{ID: a.str(keyServiceName), Type: schemas.ActorService}
	}
	if obo := a.str(keyActorOnBehalf, keyEnduserID, keyUserID); obo != act.ID {
		act.OnBehalfOf = obo
	}
	return act
}

func tool(a attrs, span ptrace.Span) schemas.Tool {
	t := schemas.Tool{
		Name:    a.str(keyToolName),
		Server:  a.str(keyToolServer, keyServerAddress),
		Version: truncate(a.str(keyToolVersion), maxShort),
		Group:   a.str(keyToolGroup),
	}
	if t.Name == "" {
		// Semantic-convention span names are "tools/call {tool}" (MCP)
		// and "execute_tool {tool}" (GenAI).
		name := span.Name()
		for _, p := range []string{mcpToolsCall + " ", opExecuteTool + " "} {
			name = strings.TrimPrefix(name, p)
		}
		t.Name = strings.TrimSpace(name)
	}
	if t.Server == "" && span.Kind() == ptrace.SpanKindServer {
		// A server span is recorded by the tool server itself.
		if v, ok := a.res.Get(keyServiceName); ok {
			t.Server = v.AsString()
		}
	}
	return t
}

func mcp(a attrs) *schemas.MCP {
	m := &schemas.MCP{
		Method:    truncate(a.str(keyMCPMethod), maxShort),
		SessionID: a.str(keyMCPSession),
		RequestID: a.str(keyJSONRPCRequestID),
	}
	switch t := strings.ToLower(a.str(keyMCPTransport)); t {
	case schemas.TransportStdio, schemas.TransportHTTP:
		m.Transport = t
	default:
		switch strings.ToLower(a.str(keyNetworkTransport)) {
		case "pipe":
			m.Transport = schemas.TransportStdio
		case "tcp", "quic":
			m.Transport = schemas.TransportHTTP
		}
	}
	if *m == (schemas.MCP{}) {
		return nil
	}
	return m
}

func outcomeAndPolicy(a attrs, st ptrace.Status) (schemas.Outcome, schemas.Policy) {
	p := schemas.Policy{
		Decision: strings.ToLower(a.str(keyPolicyDecision)),
		Rule:     a.str(keyPolicyRule),
		Reason:   truncate(a.str(keyPolicyReason), maxText),
	}
	o := schemas.Outcome{Status: strings.ToLower(a.str(keyOutcomeStatus))}
	errType := a.str(keyErrorType)
	if !schemas.IsStatus(o.Status) {
		o.Status = statusFromSpan(p.Decision, errType, a, st)
	}
	if o.Status != schemas.StatusOK {
		o.ErrorCode = truncate(a.str(keyOutcomeCode, keyErrorType, keyRPCStatusCode), maxShort)
		o.ErrorMessage = truncate(st.Message(), maxText)
	}
	if p.Decision == "" {
		p.Decision = schemas.DecisionAllow
		if o.Status == schemas.StatusPolicyBlocked {
			p.Decision = schemas.DecisionDeny
		}
	}
	return o, p
}

func statusFromSpan(decision, errType string, a attrs, st ptrace.Status) string {
	if decision == schemas.DecisionDeny {
		return schemas.StatusPolicyBlocked
	}
	if st.Code() != ptrace.StatusCodeError {
		return schemas.StatusOK
	}
	et := strings.ToLower(errType)
	switch {
	case et == schemas.StatusToolError, et == schemas.StatusSystemError, et == schemas.StatusPolicyBlocked, et == schemas.StatusTimeout:
		// error.type names the outcome itself (the MCP hook sets it so).
		return et
	case strings.Contains(et, "timeout") || strings.Contains(et, "deadline"):
		return schemas.StatusTimeout
	case a.str(keyRPCStatusCode) != "":
		// A JSON-RPC error is the protocol or server failing, not the
		// tool answering with an error result.
		return schemas.StatusSystemError
	}
	return schemas.StatusToolError
}

// digest returns the declared digest (lowercased), or the SHA-256 of the
// raw value when only that is on the span: the raw value itself never
// leaves this function. A raw value that is JSON is hashed in its RFC 8785
// canonical form, as the MCP hook hashes arguments, so the same arguments
// have the same digest whichever producer recorded the call.
func digest(a attrs, rawKey string, digestKeys ...string) string {
	if d := a.str(digestKeys...); d != "" {
		return strings.ToLower(strings.TrimSpace(d))
	}
	if v, ok := a.span.Get(rawKey); ok && !isEmpty(v) {
		b := []byte(v.AsString())
		if c, err := jcs.Transform(b); err == nil {
			b = c
		}
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:])
	}
	return ""
}

func costOf(a attrs) (*schemas.Cost, error) {
	var errs []error
	amount, err := a.float(keyCostAmount)
	errs = append(errs, err)
	in, err := a.int(keyInputTokens, keyCostTokensIn)
	errs = append(errs, err)
	out, err := a.int(keyOutputTokens, keyCostTokensOut)
	errs = append(errs, err)
	c := &schemas.Cost{Amount: amount, Currency: strings.ToUpper(a.str(keyCostCurrency)), TokensIn: in, TokensOut: out}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if *c == (schemas.Cost{}) {
		return nil, nil
	}
	return c, nil
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// elevationOf reads the call's elevation (elevation.scopes, .approver,
// .reason, .expires as RFC 3339), nil without one. An approver, reason or
// expiry without scopes is an error, not a record that drops them.
func elevationOf(a attrs) (*schemas.Elevation, error) {
	e := &schemas.Elevation{Scopes: a.list(keyElevScopes), Approver: a.str(keyElevApprover),
		Reason: truncate(a.str(keyElevReason), maxText)}
	exp := a.str(keyElevExpires)
	if len(e.Scopes) == 0 {
		if e.Approver != "" || e.Reason != "" || exp != "" {
			return nil, fmt.Errorf("%s, %s or %s without %s", keyElevApprover, keyElevReason, keyElevExpires, keyElevScopes)
		}
		return nil, nil
	}
	if exp != "" {
		t, err := schemas.ParseTimestamp(exp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyElevExpires, err)
		}
		e.Expires = &schemas.Timestamp{Time: t}
	}
	return e, nil
}
