package schemas

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/gowebpki/jcs"
)

// This file writes a CallRecord's RFC 8785 canonical form directly.
//
// Why hand-written: canonicalising through encoding/json and the generic
// jcs.Transform parses the record back into a tree and re-sorts every
// object, which profiling showed to be the largest cost of ingest and of
// the signer's check that each leaf is canonical (tens of µs per record).
// The record's shape is fixed, so its keys' canonical order is known at
// compile time. jcs.Transform stays the reference: the fuzz test checks
// that both produce the same bytes for every record Decode accepts.

type jcsWriter struct{ b []byte }

// obj writes the members of one object; keys must be given in RFC 8785
// order (UTF-16 code unit order; for ASCII keys, byte order).
type member struct {
	key   string
	write func(w *jcsWriter)
	omit  bool
}

func (w *jcsWriter) object(ms ...member) {
	w.b = append(w.b, '{')
	first := true
	for _, m := range ms {
		if m.omit {
			continue
		}
		if !first {
			w.b = append(w.b, ',')
		}
		first = false
		w.str(m.key)
		w.b = append(w.b, ':')
		m.write(w)
	}
	w.b = append(w.b, '}')
}

// str writes a JSON string with RFC 8785 escaping: only '"', '\\' and
// control characters are escaped, with the short forms where JSON has one
// and lowercase \u00xx otherwise. Input is valid UTF-8 (Decode checks).
func (w *jcsWriter) str(s string) {
	const hex = "0123456789abcdef"
	w.b = append(w.b, '"')
	// Runs of bytes that need no escape are copied in one append.
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		w.b = append(w.b, s[start:i]...)
		start = i + 1
		switch c {
		case '"', '\\':
			w.b = append(w.b, '\\', c)
		case '\b':
			w.b = append(w.b, '\\', 'b')
		case '\f':
			w.b = append(w.b, '\\', 'f')
		case '\n':
			w.b = append(w.b, '\\', 'n')
		case '\r':
			w.b = append(w.b, '\\', 'r')
		case '\t':
			w.b = append(w.b, '\\', 't')
		default:
			w.b = append(w.b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	w.b = append(w.b, s[start:]...)
	w.b = append(w.b, '"')
}

// time writes t in UTC as TimestampLayout has it, appended in place: the
// layout's characters (digits, '-', ':', 'T', '.', 'Z') need no escaping.
func (w *jcsWriter) time(t time.Time) {
	w.b = append(w.b, '"')
	w.b = appendTimestamp(w.b, t)
	w.b = append(w.b, '"')
}

func strMember(key, v string) member {
	return member{key: key, omit: v == "", write: func(w *jcsWriter) { w.str(v) }}
}

func intMember(key string, v int64) member {
	return member{key: key, omit: v == 0, write: func(w *jcsWriter) { w.b = strconv.AppendInt(w.b, v, 10) }}
}

// canonical writes r; omitted fields follow the struct's json omitempty
// tags exactly, so the output equals jcs.Transform(json.Marshal(r)).
func (r *CallRecord) canonical() ([]byte, error) {
	w := &jcsWriter{b: make([]byte, 0, 1024)}
	var numErr error
	w.object(
		member{key: "actor", write: func(w *jcsWriter) {
			w.object(strMember("id", r.Actor.ID), strMember("on_behalf_of", r.Actor.OnBehalfOf), strMember("type", r.Actor.Type))
		}, omit: false},
		strMember("args_sha256", r.ArgsSHA256),
		member{key: "attributes", omit: len(r.Attributes) == 0, write: func(w *jcsWriter) { w.stringMap(r.Attributes) }},
		member{key: "cost", omit: r.Cost == nil, write: func(w *jcsWriter) {
			c := r.Cost
			w.object(
				member{key: "amount", omit: c.Amount == 0, write: func(w *jcsWriter) {
					s, err := jcs.NumberToJSON(c.Amount)
					if err != nil {
						numErr = err
					}
					w.b = append(w.b, s...)
				}},
				strMember("currency", c.Currency),
				intMember("tokens_in", c.TokensIn),
				intMember("tokens_out", c.TokensOut),
			)
		}},
		strMember("data_class", r.DataClass),
		member{key: "elevation", omit: r.Elevation == nil, write: func(w *jcsWriter) {
			e := r.Elevation
			w.object(
				strMember("approver", e.Approver),
				member{key: "expires", omit: e.Expires == nil, write: func(w *jcsWriter) { w.time(e.Expires.Time) }},
				strMember("reason", e.Reason),
				// No omitempty on scopes: a nil list is null, as json.Marshal writes it.
				member{key: "scopes", write: func(w *jcsWriter) { w.strings(e.Scopes) }},
			)
		}},
		strMember("ingested_by", r.IngestedBy),
		member{key: "mcp", omit: r.MCP == nil, write: func(w *jcsWriter) {
			m := r.MCP
			w.object(strMember("method", m.Method), strMember("request_id", m.RequestID), strMember("session_id", m.SessionID), strMember("transport", m.Transport))
		}},
		member{key: "outcome", write: func(w *jcsWriter) {
			o := r.Outcome
			w.object(strMember("error_code", o.ErrorCode), strMember("error_message", o.ErrorMessage), strMember("status", o.Status))
		}},
		strMember("plan_id", r.PlanID),
		member{key: "policy", write: func(w *jcsWriter) {
			p := r.Policy
			w.object(strMember("decision", p.Decision), strMember("reason", p.Reason), strMember("rule", p.Rule))
		}},
		strMember("record_id", r.RecordID),
		strMember("region", r.Region),
		strMember("result_sha256", r.ResultSHA256),
		member{key: "scope_grants", omit: len(r.ScopeGrants) == 0, write: func(w *jcsWriter) { w.strings(r.ScopeGrants) }},
		member{key: "tool", write: func(w *jcsWriter) {
			t := r.Tool
			w.object(strMember("group", t.Group), strMember("name", t.Name), strMember("server", t.Server), strMember("version", t.Version))
		}},
		member{key: "trace", omit: r.Trace == nil, write: func(w *jcsWriter) {
			t := r.Trace
			// trace_id and span_id have no omitempty in the struct.
			w.object(strMember("parent_span_id", t.ParentSpanID),
				member{key: "span_id", write: func(w *jcsWriter) { w.str(t.SpanID) }},
				member{key: "trace_id", write: func(w *jcsWriter) { w.str(t.TraceID) }})
		}},
		member{key: "ts_end", write: func(w *jcsWriter) { w.time(r.TSEnd.Time) }},
		member{key: "ts_start", write: func(w *jcsWriter) { w.time(r.TSStart.Time) }},
		strMember("workflow_id", r.WorkflowID),
	)
	if numErr != nil {
		return nil, fmt.Errorf("canonical cost.amount: %w", numErr)
	}
	return w.b, nil
}

// strings writes a list of strings; nil is null, as json.Marshal has it.
func (w *jcsWriter) strings(list []string) {
	if list == nil {
		w.b = append(w.b, "null"...)
		return
	}
	w.b = append(w.b, '[')
	for i, s := range list {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.str(s)
	}
	w.b = append(w.b, ']')
}

// stringMap writes a map with its keys in RFC 8785 order: by UTF-16 code
// units, which differs from UTF-8 byte order only for characters beyond
// the Basic Multilingual Plane.
func (w *jcsWriter) stringMap(m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareUTF16)
	w.b = append(w.b, '{')
	for i, k := range keys {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.str(k)
		w.b = append(w.b, ':')
		w.str(m[k])
	}
	w.b = append(w.b, '}')
}

func compareUTF16(a, b string) int {
	// Without characters beyond the Basic Multilingual Plane (4-byte
	// UTF-8, lead byte 0xF0 and up), UTF-16 code units are the code
	// points, whose order UTF-8's byte order keeps: compare in place.
	if !hasAstral(a) && !hasAstral(b) {
		return strings.Compare(a, b)
	}
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

func hasAstral(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0xF0 {
			return true
		}
	}
	return false
}
