package schemas

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Actor types.
const (
	ActorAgent   = "agent"
	ActorUser    = "user"
	ActorService = "service"
)

// Policy decisions.
const (
	DecisionAllow  = "allow"
	DecisionDeny   = "deny"
	DecisionRedact = "redact"
)

// Outcome statuses.
const (
	StatusOK            = "ok"
	StatusToolError     = "tool_error"
	StatusSystemError   = "system_error"
	StatusPolicyBlocked = "policy_blocked"
	StatusTimeout       = "timeout"
)

// statuses are the outcome statuses, in the schema's order.
var statuses = [...]string{StatusOK, StatusToolError, StatusSystemError, StatusPolicyBlocked, StatusTimeout}

// IsStatus reports whether s is one of the outcome statuses.
func IsStatus(s string) bool { return slices.Contains(statuses[:], s) }

// Statuses lists the outcome statuses, for messages that name them.
func Statuses() []string { return slices.Clone(statuses[:]) }

// MethodCatalog is the mcp.method of catalog records: what a server
// offered agents (a tool registered, changed or gone), not a call. Not an
// MCP method, so no call is ever taken for one; KPIs and per-call metrics
// leave them out, the span store keeps them in its tool catalog.
const MethodCatalog = "catalog/tool"

// IsCatalog reports whether r is a catalog record.
func (r *CallRecord) IsCatalog() bool { return r.MCP != nil && r.MCP.Method == MethodCatalog }

// MCP transports.
const (
	TransportStdio = "stdio"
	TransportHTTP  = "http"
)

// CallRecord is one agent→tool call (call record v1).
type CallRecord struct {
	RecordID     string            `json:"record_id"`
	TSStart      Timestamp         `json:"ts_start"`
	TSEnd        Timestamp         `json:"ts_end"`
	Actor        Actor             `json:"actor"`
	Tool         Tool              `json:"tool"`
	MCP          *MCP              `json:"mcp,omitempty"`
	Trace        *Trace            `json:"trace,omitempty"`
	ScopeGrants  []string          `json:"scope_grants,omitempty"`
	Elevation    *Elevation        `json:"elevation,omitempty"`
	Policy       Policy            `json:"policy"`
	Outcome      Outcome           `json:"outcome"`
	ArgsSHA256   string            `json:"args_sha256,omitempty"`
	ResultSHA256 string            `json:"result_sha256,omitempty"`
	Cost         *Cost             `json:"cost,omitempty"`
	WorkflowID   string            `json:"workflow_id,omitempty"`
	PlanID       string            `json:"plan_id,omitempty"`
	Region       string            `json:"region,omitempty"`
	DataClass    string            `json:"data_class,omitempty"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	// IngestedBy is the authenticated principal that submitted the record,
	// stamped by the server; a client's own value is replaced.
	IngestedBy string `json:"ingested_by,omitempty"`
}

// Actor is who made the call.
type Actor struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	OnBehalfOf string `json:"on_behalf_of,omitempty"`
}

// Tool is what was called.
type Tool struct {
	Name    string `json:"name"`
	Server  string `json:"server,omitempty"`
	Version string `json:"version,omitempty"`
	Group   string `json:"group,omitempty"`
}

// MCP is the protocol-level identity of the call.
type MCP struct {
	Method    string `json:"method,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Transport string `json:"transport,omitempty"`
}

// Trace is the W3C trace context of the call's span.
type Trace struct {
	TraceID      string `json:"trace_id"`
	SpanID       string `json:"span_id"`
	ParentSpanID string `json:"parent_span_id,omitempty"`
}

// Policy is the control plane's decision on the call.
type Policy struct {
	Decision string `json:"decision"`
	Rule     string `json:"rule,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Outcome is how the call ended.
type Outcome struct {
	Status       string `json:"status"`
	ErrorCode    string `json:"error_code,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
}

// Elevation is a grant of scopes beyond the caller's standing ones
// (scope_grants) under which the call was made, and who approved it: the
// record is the evidence that an elevated call had an approver and a
// reason, or that it had none.
type Elevation struct {
	Scopes   []string   `json:"scopes"`
	Approver string     `json:"approver,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Expires  *Timestamp `json:"expires,omitempty"`
}

// Cost is what the call cost.
type Cost struct {
	Amount    float64 `json:"amount,omitempty"`
	Currency  string  `json:"currency,omitempty"`
	TokensIn  int64   `json:"tokens_in,omitempty"`
	TokensOut int64   `json:"tokens_out,omitempty"`
}

// Latency is the call's duration.
func (r *CallRecord) Latency() time.Duration { return r.TSEnd.Sub(r.TSStart.Time) }

// Timestamp is an instant whose JSON form is normalised — UTC, exactly nine
// fractional digits — so that one instant has one encoding and therefore
// one leaf hash, whichever offset or precision the client sent.
type Timestamp struct{ time.Time }

// TimestampLayout is the normalised form.
const TimestampLayout = "2006-01-02T15:04:05.000000000Z"

// appendTimestamp appends t's normalised form (TimestampLayout, in UTC),
// unquoted: the one spelling of an instant that the encoder writes and
// the scanner recognises as canonical.
func appendTimestamp(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, TimestampLayout)
}

// MarshalJSON writes the normalised form.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	b := append(make([]byte, 0, len(TimestampLayout)+2), '"')
	return append(appendTimestamp(b, t.Time), '"'), nil
}

// UnmarshalJSON accepts any RFC 3339 timestamp.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseTimestamp(s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// UnmarshalJSONFrom is UnmarshalJSON for the JSON v2 decoder of Decode's
// fast path: it reads the string token in place instead of handing the
// raw bytes to encoding/json, which validated and copied them a second
// time for each of a record's two timestamps.
func (t *Timestamp) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '"' {
		return fmt.Errorf("timestamp must be a string, not %s", tok.Kind())
	}
	v, err := ParseTimestamp(tok.String())
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// ParseTimestamp parses an RFC 3339 timestamp with optional fractional
// seconds, at most nine digits of them: time.Parse would drop a tenth
// digit and beyond without a word, and the leaf would then hold another
// instant than the one sent.
func ParseTimestamp(s string) (time.Time, error) {
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not an RFC 3339 timestamp: %q", s)
	}
	if n := fractionDigits(s); n > 9 {
		return time.Time{}, fmt.Errorf("%d fractional digits in %q; at most 9 (nanoseconds) are kept exactly", n, s)
	}
	return v, nil
}

// fractionDigits counts the digits after the seconds of an RFC 3339
// timestamp that time.Parse accepted ("2006-01-02T15:04:05" is 19 bytes;
// time.Parse takes '.' or ',' before the fraction).
func fractionDigits(s string) int {
	if len(s) < 21 || (s[19] != '.' && s[19] != ',') {
		return 0
	}
	n := 0
	for _, c := range s[20:] {
		if c < '0' || c > '9' {
			break
		}
		n++
	}
	return n
}
