package schemas

import (
	"strconv"

	"github.com/gowebpki/jcs"
)

// This file decodes the common shape of a call record in one pass.
//
// Why hand-written: decoding was the largest share of ingest's CPU (the
// JSON v2 decoder looks each member up by reflection and builds every
// value generically: ≈ 11 µs a record under load). A record's shape is
// fixed, so a scanner that knows it does the same in a fraction of that.
// It accepts only a strict subset of JSON — strings without escapes,
// numbers in plain syntax, the schema's member names each at most once —
// and says "not sure" to everything else, which then takes the JSON v2
// path as before. The fuzz test holds it to that path: whatever it
// accepts, JSON v2 must accept too and decode to the same record.

// scanner reads one JSON text from b.
type scanner struct {
	b []byte
	// src is b as one string: the record's strings are slices of it, one
	// allocation instead of one per field (a record is short-lived).
	src string
	i   int
	// ok turns false at the first thing the scanner does not handle; every
	// method then returns zero values and the result is discarded.
	ok bool
	// canon turns false at the first thing that makes b differ from its
	// record's RFC 8785 form (whitespace, member order, a number or time
	// not spelled canonically, a member the canonical form omits or one it
	// has that b lacks). While it holds, b is that form already and need
	// not be written again to be compared or stored. It may be false for
	// canonical input (it is conservative); never true for other input.
	canon bool
	// nameStart is the offset of the current member's name (its quote).
	nameStart int
}

// scanned is what the scanner learnt about the text beyond the record.
type scanned struct {
	// canonical: the text is its record's canonical form (scanner.canon).
	canonical bool
	// Of a canonical text: where the top-level members before
	// "ingested_by" end (0: none) and where those after it start (0:
	// none), to put another principal in its place without re-encoding.
	beforeEnd, afterStart int
}

// Members of the record that the canonical form always has, as bits.
const (
	hasActor = 1 << iota
	hasOutcome
	hasPolicy
	hasTool
	hasTSEnd
	hasTSStart
	hasAlways = hasActor | hasOutcome | hasPolicy | hasTool | hasTSEnd | hasTSStart
)

// decodeScan decodes data if it is in the subset the scanner handles.
// data must be valid UTF-8 (Decode checks it once, before any path).
func decodeScan(data []byte) (*CallRecord, scanned, bool) {
	s := &scanner{b: data, src: string(data), ok: true, canon: true}
	r := &CallRecord{}
	var sc scanned
	var have int
	s.ws()
	s.object(func(key []byte) bool {
		start := s.nameStart
		switch string(key) {
		case "record_id":
			r.RecordID = s.str()
		case "ts_start":
			r.TSStart = s.timestamp()
			have |= hasTSStart
		case "ts_end":
			r.TSEnd = s.timestamp()
			have |= hasTSEnd
		case "actor":
			have |= hasActor
			s.object(func(k []byte) bool {
				switch string(k) {
				case "id":
					r.Actor.ID = s.str()
				case "type":
					r.Actor.Type = s.str()
				case "on_behalf_of":
					r.Actor.OnBehalfOf = s.str()
				default:
					return false
				}
				return true
			})
		case "tool":
			have |= hasTool
			s.object(func(k []byte) bool {
				switch string(k) {
				case "name":
					r.Tool.Name = s.str()
				case "server":
					r.Tool.Server = s.str()
				case "version":
					r.Tool.Version = s.str()
				case "group":
					r.Tool.Group = s.str()
				default:
					return false
				}
				return true
			})
		case "mcp":
			m := &MCP{}
			r.MCP = m
			s.object(func(k []byte) bool {
				switch string(k) {
				case "method":
					m.Method = s.str()
				case "session_id":
					m.SessionID = s.str()
				case "request_id":
					m.RequestID = s.str()
				case "transport":
					m.Transport = s.str()
				default:
					return false
				}
				return true
			})
		case "trace":
			t := &Trace{}
			r.Trace = t
			ids := 0
			s.object(func(k []byte) bool {
				switch string(k) {
				case "trace_id":
					t.TraceID = s.str()
					ids++
				case "span_id":
					t.SpanID = s.str()
					ids++
				case "parent_span_id":
					t.ParentSpanID = s.str()
				default:
					return false
				}
				return true
			})
			if ids != 2 { // the canonical form always has both
				s.canon = false
			}
		case "scope_grants":
			r.ScopeGrants = s.strings()
			if len(r.ScopeGrants) == 0 { // omitted when empty
				s.canon = false
			}
		case "elevation":
			e := &Elevation{}
			r.Elevation = e
			scopes := false
			s.object(func(k []byte) bool {
				switch string(k) {
				case "scopes":
					e.Scopes = s.strings()
					scopes = true
				case "approver":
					e.Approver = s.str()
				case "reason":
					e.Reason = s.str()
				case "expires":
					t := s.timestamp()
					e.Expires = &t
				default:
					return false
				}
				return true
			})
			if !scopes { // the canonical form has them (null when absent)
				s.canon = false
			}
		case "policy":
			have |= hasPolicy
			s.object(func(k []byte) bool {
				switch string(k) {
				case "decision":
					r.Policy.Decision = s.str()
				case "rule":
					r.Policy.Rule = s.str()
				case "reason":
					r.Policy.Reason = s.str()
				default:
					return false
				}
				return true
			})
		case "outcome":
			have |= hasOutcome
			s.object(func(k []byte) bool {
				switch string(k) {
				case "status":
					r.Outcome.Status = s.str()
				case "error_code":
					r.Outcome.ErrorCode = s.str()
				case "error_message":
					r.Outcome.ErrorMessage = s.str()
				default:
					return false
				}
				return true
			})
		case "args_sha256":
			r.ArgsSHA256 = s.str()
		case "result_sha256":
			r.ResultSHA256 = s.str()
		case "cost":
			c := &Cost{}
			r.Cost = c
			s.object(func(k []byte) bool {
				switch string(k) {
				// Zero amounts and token counts (-0 too) are omitted
				// from the canonical form.
				case "amount":
					c.Amount = s.float()
					s.canon = s.canon && c.Amount != 0
				case "currency":
					c.Currency = s.str()
				case "tokens_in":
					c.TokensIn = s.int()
					s.canon = s.canon && c.TokensIn != 0
				case "tokens_out":
					c.TokensOut = s.int()
					s.canon = s.canon && c.TokensOut != 0
				default:
					return false
				}
				return true
			})
		case "workflow_id":
			r.WorkflowID = s.str()
		case "plan_id":
			r.PlanID = s.str()
		case "region":
			r.Region = s.str()
		case "data_class":
			r.DataClass = s.str()
		case "attributes":
			m := map[string]string{}
			r.Attributes = m
			s.members(func(k []byte) bool {
				if _, dup := m[string(k)]; dup {
					return false
				}
				m[string(k)] = s.str()
				return true
			}, false)
			if len(m) == 0 { // omitted when empty
				s.canon = false
			}
		case "ingested_by":
			r.IngestedBy = s.str()
		default:
			return false
		}
		// Member names are ASCII here: byte order is canonical order.
		switch k := string(key); {
		case k < "ingested_by":
			sc.beforeEnd = s.i
		case k > "ingested_by" && sc.afterStart == 0:
			sc.afterStart = start
		}
		return true
	})
	s.ws()
	if !s.ok || s.i != len(s.b) {
		return nil, scanned{}, false
	}
	sc.canonical = s.canon && have == hasAlways
	return r, sc, true
}

func (s *scanner) fail() { s.ok = false }

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
			s.canon = false
		default:
			return
		}
	}
}

// expect consumes c after optional whitespace.
func (s *scanner) expect(c byte) {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return
	}
	s.fail()
}

// object reads an object, calling member for each name with the scanner
// at its value; member reads the value and returns false for a name it
// does not know. A name given twice fails the scan: JSON v2 rejects
// duplicate names, and a record must mean one thing.
func (s *scanner) object(member func(name []byte) bool) { s.members(member, true) }

// members is object; with dedupe false, member must reject a repeated
// name itself (attributes do, through their map).
func (s *scanner) members(member func(name []byte) bool, dedupe bool) {
	s.expect('{')
	s.ws()
	if s.ok && s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return
	}
	// Names seen in this object; objects have at most a few dozen members
	// except attributes, whose member func checks its map instead.
	var seenBuf [32][]byte
	seen := seenBuf[:0]
	var prev []byte
	for s.ok {
		s.ws()
		s.nameStart = s.i
		name := s.raw()
		// Canonical order is by UTF-16 code units, which byte order keeps
		// but for characters beyond the Basic Multilingual Plane (only
		// attribute names can have them): those are left to the encoder.
		if s.canon && (prev != nil && string(prev) >= string(name) || !dedupe && hasAstral(string(name))) {
			s.canon = false
		}
		prev = name
		if dedupe {
			for _, n := range seen {
				if string(n) == string(name) {
					s.fail()
				}
			}
			seen = append(seen, name)
		}
		s.expect(':')
		s.ws()
		if !s.ok || !member(name) {
			s.fail()
			return
		}
		s.ws()
		if s.i >= len(s.b) {
			s.fail()
			return
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// str reads a non-empty string without escapes or control characters (the
// input is valid UTF-8: decodeScan's precondition).
func (s *scanner) str() string {
	if v := s.raw(); s.ok {
		end := s.i - 1 // the closing quote
		return s.src[end-len(v) : end]
	}
	return ""
}

// raw is str's bytes, in place.
func (s *scanner) raw() []byte {
	if !s.ok || s.i >= len(s.b) || s.b[s.i] != '"' {
		s.fail()
		return nil
	}
	start := s.i + 1
	// An empty string is left to the other paths: the schema rejects it
	// wherever a minimum length applies, and a "" read here would look
	// like an absent member.
	if start < len(s.b) && s.b[start] == '"' {
		s.fail()
		return nil
	}
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j]
		case c == '\\' || c < 0x20:
			s.fail()
			return nil
		}
	}
	s.fail()
	return nil
}

func (s *scanner) strings() []string {
	s.expect('[')
	out := []string{} // JSON v2 decodes [] to an empty, non-nil slice
	s.ws()
	if s.ok && s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return out
	}
	for s.ok {
		s.ws()
		out = append(out, s.str())
		s.ws()
		if s.i >= len(s.b) {
			s.fail()
			break
		}
		if s.b[s.i] == ']' {
			s.i++
			break
		}
		if s.b[s.i] != ',' {
			s.fail()
			break
		}
		s.i++
	}
	return out
}

func (s *scanner) timestamp() Timestamp {
	v := s.str()
	if !s.ok {
		return Timestamp{}
	}
	t, err := ParseTimestamp(v)
	if err != nil {
		s.fail()
	}
	if s.canon {
		// The canonical form has every time in UTC to the nanosecond.
		var buf [len(TimestampLayout) + 8]byte
		s.canon = string(appendTimestamp(buf[:0], t)) == v
	}
	return Timestamp{Time: t}
}

// number reads a JSON number literal: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
// and reports whether it had a fraction or an exponent.
func (s *scanner) number() (lit string, integer bool) {
	start, b := s.i, s.b
	j := s.i
	digits := func() int {
		n := 0
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
			n++
		}
		return n
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case digits() == 0:
		s.fail()
		return "", false
	}
	integer = true
	if j < len(b) && b[j] == '.' {
		j++
		integer = false
		if digits() == 0 {
			s.fail()
			return "", false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		integer = false
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			s.fail()
			return "", false
		}
	}
	s.i = j
	return s.src[start:j], integer // a slice of src: no copy
}

func (s *scanner) float() float64 {
	lit, _ := s.number()
	if !s.ok {
		return 0
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || f == 0 && nonZeroMantissa([]byte(lit)) {
		// Out of range, or a non-zero number a double rounds to 0 (not
		// I-JSON): the schema path names it.
		s.fail()
	}
	if s.canon {
		c, err := jcs.NumberToJSON(f)
		s.canon = err == nil && c == lit
	}
	return f
}

// int reads an integer literal; a fraction or exponent ("1.0", "1e3") is
// left to JSON v2, which decides what an int64 field makes of it.
func (s *scanner) int() int64 {
	lit, integer := s.number()
	if !s.ok {
		return 0
	}
	if !integer {
		s.fail()
		return 0
	}
	n, err := strconv.ParseInt(lit, 10, 64)
	if err != nil {
		s.fail()
	}
	return n
}
