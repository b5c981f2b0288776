package schemas

import (
	"bytes"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
)

// decodeFast is the common case of Decode: a valid record, decoded and
// checked without building a generic JSON tree for the schema validator,
// which costs several times more. It only ever says "valid" (ok) or "not
// sure"; everything it does not accept goes through the full JSON Schema
// validation, which also produces the per-field error list. Its checks
// must therefore be at least as strict as callrecord.v1.json: the fuzz
// test asserts that whatever it accepts, the schema path accepts too, with
// the same canonical bytes.
//
// The JSON v2 decoder is used for its strictness: member names match
// case-sensitively, unknown members and duplicate names are rejected.
//
// data must be valid UTF-8, as Decode makes sure.
func decodeFast(data []byte) (*CallRecord, scanned, bool) {
	// The scanner takes no null and no empty string (it fails on both).
	r, sc, ok := decodeScan(data)
	if !ok {
		// null and "" decode to zero values indistinguishable from an
		// absent field, while the schema rejects them (wrong type,
		// minLength): leave such records to the schema. Rare in practice;
		// only a slower path.
		if bytes.Contains(data, []byte("null")) || bytes.Contains(data, []byte(`""`)) {
			return nil, scanned{}, false
		}
		if r, ok = decodeV2(data); !ok {
			return nil, scanned{}, false
		}
		// JSON v2 rounds a non-zero amount like 1e-400 to 0 (not I-JSON)
		// and the literal is gone by now: a zero amount from this rare
		// path is left to the schema path, which sees the literal.
		if r.Cost != nil && r.Cost.Amount == 0 {
			return nil, scanned{}, false
		}
	}
	if !r.fastValid() {
		return nil, scanned{}, false
	}
	return r, sc, true
}

// decodeV2 decodes with JSON v2, for what decodeScan leaves (escapes,
// unusual numbers, errors).
func decodeV2(data []byte) (*CallRecord, bool) {
	var r CallRecord
	if err := jsonv2.Unmarshal(data, &r, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, false
	}
	return &r, true
}

func (r *CallRecord) fastValid() bool {
	ok := matchRecordID(r.RecordID) &&
		idOK(r.Actor.ID, true) && oneOf(r.Actor.Type, ActorAgent, ActorUser, ActorService) && idOK(r.Actor.OnBehalfOf, false) &&
		idOK(r.Tool.Name, true) && idOK(r.Tool.Server, false) && len(r.Tool.Version) <= 128 && idOK(r.Tool.Group, false) &&
		oneOf(r.Policy.Decision, DecisionAllow, DecisionDeny, DecisionRedact) && idOK(r.Policy.Rule, false) && len(r.Policy.Reason) <= 4096 &&
		IsStatus(r.Outcome.Status) &&
		len(r.Outcome.ErrorCode) <= 128 && len(r.Outcome.ErrorMessage) <= 4096 &&
		hexOK(r.ArgsSHA256, 64, false) && hexOK(r.ResultSHA256, 64, false) &&
		idOK(r.WorkflowID, false) && idOK(r.PlanID, false) && len(r.Region) <= 128 && len(r.DataClass) <= 128 &&
		idOK(r.IngestedBy, false) && len(r.ScopeGrants) <= 64 && len(r.Attributes) <= MaxAttributes
	if !ok {
		return false
	}
	if m := r.MCP; m != nil {
		if len(m.Method) > 128 || !idOK(m.SessionID, false) || !idOK(m.RequestID, false) ||
			(m.Transport != "" && !oneOf(m.Transport, TransportStdio, TransportHTTP)) {
			return false
		}
	}
	if t := r.Trace; t != nil {
		if !hexOK(t.TraceID, 32, true) || !hexOK(t.SpanID, 16, true) || !hexOK(t.ParentSpanID, 16, false) ||
			allZero(t.TraceID) || allZero(t.SpanID) || (t.ParentSpanID != "" && allZero(t.ParentSpanID)) {
			return false
		}
	}
	if c := r.Cost; c != nil {
		if c.Amount < 0 || c.Amount > 1e12 || c.TokensIn < 0 || c.TokensIn > 1e15 || c.TokensOut < 0 || c.TokensOut > 1e15 {
			return false
		}
		if c.Currency != "" && !isCurrency(c.Currency) {
			return false
		}
	}
	for _, s := range r.ScopeGrants {
		if !idOK(s, true) {
			return false
		}
	}
	if e := r.Elevation; e != nil {
		if len(e.Scopes) == 0 || len(e.Scopes) > 64 || !idOK(e.Approver, false) || len(e.Reason) > 4096 ||
			(e.Expires != nil && !yearOK(e.Expires.Year())) {
			return false
		}
		for _, s := range e.Scopes {
			if !idOK(s, true) {
				return false
			}
		}
	}
	for k, v := range r.Attributes {
		if k == "" || len(k) > 128 || len(v) > 4096 {
			return false
		}
	}
	// Timestamps parsed already (Timestamp.UnmarshalJSON); the rest of the
	// semantic checks are shared with the schema path.
	if r.TSEnd.Before(r.TSStart.Time) || !yearOK(r.TSStart.Year()) || !yearOK(r.TSEnd.Year()) {
		return false
	}
	return true
}

// Byte lengths are compared against the schema's character limits: a
// multi-byte string near a limit falls back to the exact schema check.
func idOK(s string, required bool) bool {
	if s == "" {
		return !required
	}
	return len(s) <= 256
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

func hexOK(s string, n int, required bool) bool {
	if s == "" {
		return !required
	}
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !lowerHex[s[i]] {
			return false
		}
	}
	return true
}

// lowerHex marks the bytes of lowercase hexadecimal: one load a byte
// where two range checks were, over the ~200 hex digits of a record's
// digests and trace context.
var lowerHex = func() (t [256]bool) {
	for _, c := range "0123456789abcdef" {
		t[c] = true
	}
	return t
}()

func allZero(s string) bool { return strings.Trim(s, "0") == "" }

func isCurrency(s string) bool {
	return len(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' && s[2] >= 'A' && s[2] <= 'Z'
}

func matchRecordID(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func yearOK(y int) bool { return y >= 1970 && y <= 2261 }
