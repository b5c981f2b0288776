package schemas

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const fullRecord = `{
  "record_id": "0193a1c2-7b7e-7d6f-9b8a-2f1e0c4d5a6b",
  "ts_start": "2026-11-25T10:00:00.000000001Z",
  "ts_end": "2026-11-25T11:00:00.25+01:00",
  "actor": {"id": "agent-7", "type": "agent", "on_behalf_of": "alice@example.com"},
  "tool": {"name": "search_tickets", "server": "jira-mcp", "version": "1.4.0", "group": "ticketing"},
  "mcp": {"method": "tools/call", "session_id": "s-1", "request_id": "42", "transport": "http"},
  "trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "parent_span_id": "00f067aa0ba902b8"},
  "scope_grants": ["tickets:read"],
  "elevation": {"scopes": ["tickets:admin"], "approver": "bob@example.com", "reason": "INC-7 cleanup", "expires": "2026-11-25T12:00:00+01:00"},
  "policy": {"decision": "redact", "rule": "pii", "reason": "email in args"},
  "outcome": {"status": "tool_error", "error_code": "E42", "error_message": "upstream 500"},
  "args_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  "result_sha256": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
  "cost": {"amount": 0.0125, "currency": "USD", "tokens_in": 120, "tokens_out": 48},
  "workflow_id": "wf-1", "plan_id": "p-1", "region": "eu-west-1", "data_class": "internal",
  "attributes": {"env": "prod"},
  "ingested_by": "gw-1"
}`

const minimalRecord = `{"record_id":"r1","ts_start":"2026-01-02T03:04:05Z","ts_end":"2026-01-02T03:04:05Z",
  "actor":{"id":"a","type":"user"},"tool":{"name":"t"},"policy":{"decision":"allow"},"outcome":{"status":"ok"}}`

func TestDecodeValid(t *testing.T) {
	for name, in := range map[string]string{"full": fullRecord, "minimal": minimalRecord} {
		t.Run(name, func(t *testing.T) {
			r, err := Decode([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if r.RecordID == "" || r.Actor.ID == "" || r.Tool.Name != map[string]string{"full": "search_tickets", "minimal": "t"}[name] {
				t.Fatalf("decoded %+v", r)
			}
		})
	}
	r, _ := Decode([]byte(fullRecord))
	if got := r.Latency().Nanoseconds(); got != 249_999_999 {
		t.Fatalf("latency %dns, want 249999999 (offsets must be honoured)", got)
	}
}

// mutate returns minimalRecord changed by f.
func mutate(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(minimalRecord), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeReportsEveryBadField(t *testing.T) {
	manyAttrs := map[string]any{}
	for i := 0; i < MaxAttributes+1; i++ {
		manyAttrs[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		name  string
		f     func(m map[string]any)
		paths []string
	}{
		{"wrong type", func(m map[string]any) { m["tool"] = map[string]any{"name": 42} }, []string{"$.tool.name"}},
		{"missing required", func(m map[string]any) { delete(m, "actor") }, []string{"$.actor"}},
		{"missing nested", func(m map[string]any) { m["actor"] = map[string]any{"id": "a"} }, []string{"$.actor.type"}},
		{"bad enum", func(m map[string]any) { m["policy"] = map[string]any{"decision": "maybe"} }, []string{"$.policy.decision"}},
		{"bad hex", func(m map[string]any) { m["args_sha256"] = "XYZ" }, []string{"$.args_sha256"}},
		{"bad trace id", func(m map[string]any) {
			m["trace"] = map[string]any{"trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736", "span_id": "00f067aa0ba902b7"}
		}, []string{"$.trace.trace_id"}},
		{"zero trace id", func(m map[string]any) {
			m["trace"] = map[string]any{"trace_id": strings.Repeat("0", 32), "span_id": "00f067aa0ba902b7"}
		}, []string{"$.trace.trace_id"}},
		{"too many attributes", func(m map[string]any) { m["attributes"] = manyAttrs }, []string{"$.attributes"}},
		{"string too long", func(m map[string]any) { m["workflow_id"] = strings.Repeat("w", 257) }, []string{"$.workflow_id"}},
		{"bad array item", func(m map[string]any) { m["scope_grants"] = []any{"ok", 7} }, []string{"$.scope_grants[1]"}},
		{"end before start", func(m map[string]any) { m["ts_end"] = "2026-01-02T03:04:04Z" }, []string{"$.ts_end"}},
		{"not a timestamp", func(m map[string]any) { m["ts_start"] = "yesterday" }, []string{"$.ts_start"}},
		{"unknown field", func(m map[string]any) { m["password"] = "hunter2" }, []string{"$.password"}},
		{"negative cost", func(m map[string]any) { m["cost"] = map[string]any{"amount": -1} }, []string{"$.cost.amount"}},
		{"bad record id", func(m map[string]any) { m["record_id"] = "has space" }, []string{"$.record_id"}},
		{"elevation without scopes", func(m map[string]any) { m["elevation"] = map[string]any{"approver": "bob"} }, []string{"$.elevation.scopes"}},
		{"elevation with no scope", func(m map[string]any) { m["elevation"] = map[string]any{"scopes": []any{}} }, []string{"$.elevation.scopes"}},
		{"elevation expiry not a time", func(m map[string]any) {
			m["elevation"] = map[string]any{"scopes": []any{"a"}, "expires": "tomorrow"}
		}, []string{"$.elevation.expires"}},
		{"unknown elevation field", func(m map[string]any) {
			m["elevation"] = map[string]any{"scopes": []any{"a"}, "ticket": "INC-7"}
		}, []string{"$.elevation.ticket"}},
		{"null optional", func(m map[string]any) { m["region"] = nil }, []string{"$.region"}},
		{"empty id", func(m map[string]any) { m["workflow_id"] = "" }, []string{"$.workflow_id"}},
		{"key in other case", func(m map[string]any) { m["Region"] = "eu" }, []string{"$.Region"}},
		{"three at once", func(m map[string]any) {
			m["tool"] = map[string]any{"name": 42}
			m["outcome"] = map[string]any{"status": "fine"}
			delete(m, "record_id")
		}, []string{"$.outcome.status", "$.record_id", "$.tool.name"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(mutate(t, c.f))
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want a ValidationError", err)
			}
			var got []string
			for _, f := range ve.Errors {
				got = append(got, f.Path)
				if f.Message == "" {
					t.Errorf("%s has no message", f.Path)
				}
			}
			if strings.Join(got, ",") != strings.Join(c.paths, ",") {
				t.Fatalf("paths %v, want %v (%v)", got, c.paths, err)
			}
		})
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	big := mutate(t, func(m map[string]any) { m["attributes"] = map[string]any{"x": strings.Repeat("a", 4000)} })
	huge := append([]byte(`{"pad":"`), bytes.Repeat([]byte("a"), MaxRecordBytes)...)
	huge = append(huge, `"}`...)
	cases := []struct {
		name string
		in   []byte
		err  error
	}{
		{"over 64 KiB", huge, ErrTooLarge},
		{"invalid utf-8", []byte("{\"record_id\":\"\xff\"}"), ErrInvalidUTF8},
		{"malformed", []byte(`{"record_id":`), ErrMalformed},
		{"trailing data", []byte(minimalRecord + `{}`), ErrMalformed},
		{"array", []byte(`[` + minimalRecord + `]`), ErrMalformed},
		{"string", []byte(`"hello"`), ErrMalformed},
		{"value too long", big, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.in)
			if c.err == nil {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				return
			}
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	r, err := Decode([]byte(minimalRecord))
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	// RFC 8785 by hand: keys sorted by UTF-16 code units, no whitespace,
	// timestamps in the normalised form.
	want := `{"actor":{"id":"a","type":"user"},"outcome":{"status":"ok"},"policy":{"decision":"allow"},` +
		`"record_id":"r1","tool":{"name":"t"},"ts_end":"2026-01-02T03:04:05.000000000Z","ts_start":"2026-01-02T03:04:05.000000000Z"}`
	if string(got) != want {
		t.Fatalf("canonical\n got %s\nwant %s", got, want)
	}
	// Offsets, precision, key order and whitespace do not change the bytes.
	other := `{ "tool":{"name":"t"}, "ts_end":"2026-01-02T05:04:05.000+02:00", "record_id":"r1",
	  "outcome":{"status":"ok"}, "actor":{"type":"user","id":"a"}, "policy":{"decision":"allow"},
	  "ts_start":"2026-01-02T03:04:05.0Z" }`
	r2, err := Decode([]byte(other))
	if err != nil {
		t.Fatal(err)
	}
	got2, _ := r2.Canonical()
	if !bytes.Equal(got, got2) {
		t.Fatalf("same record, different bytes:\n%s\n%s", got, got2)
	}
	h := sha256.Sum256(append([]byte{0}, got...))
	if !bytes.Equal(LeafHash(got), h[:]) {
		t.Fatal("leaf hash is not SHA-256(0x00 || canonical)")
	}
	// Numbers and escapes per RFC 8785.
	c, err := Canonicalize([]byte(`{"b":1.50,"a":"<\u00e9>","c":1e3}`))
	if err != nil || string(c) != `{"a":"<é>","b":1.5,"c":1000}` {
		t.Fatalf("Canonicalize = %s, %v", c, err)
	}
}

func TestSchemaIsServedAsEmbedded(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(CallRecordV1Schema, &doc); err != nil || doc["$id"] != SchemaID {
		t.Fatalf("embedded schema: %v %v", err, doc["$id"])
	}
}

// Seal is the check for records built in Go: it must agree with Decode of
// the canonical bytes on every edge the fast checks could miss.
func TestSealAgreesWithDecode(t *testing.T) {
	base := func() *CallRecord {
		r, err := Decode([]byte(fullRecord))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	plus1 := time.FixedZone("+01", 3600)
	for _, tc := range []struct {
		name   string
		mutate func(r *CallRecord)
		ok     bool
	}{
		{"as decoded", func(*CallRecord) {}, true},
		{"empty attribute value", func(r *CallRecord) { r.Attributes["x"] = "" }, true},
		{"empty attribute key", func(r *CallRecord) { r.Attributes[""] = "v" }, false},
		{"all-zero span id", func(r *CallRecord) { r.Trace.SpanID = "0000000000000000" }, false},
		{"empty scope", func(r *CallRecord) { r.ScopeGrants = append(r.ScopeGrants, "") }, false},
		{"elevation without scopes", func(r *CallRecord) { r.Elevation.Scopes = nil }, false},
		{"elevation with an empty scope", func(r *CallRecord) { r.Elevation.Scopes = append(r.Elevation.Scopes, "") }, false},
		{"elevation without expiry", func(r *CallRecord) { r.Elevation.Expires = nil }, true},
		{"elevation approver over 256 characters", func(r *CallRecord) { r.Elevation.Approver = strings.Repeat("a", 257) }, false},
		{"bad actor type", func(r *CallRecord) { r.Actor.Type = "robot" }, false},
		{"end before start", func(r *CallRecord) { r.TSEnd.Time = r.TSStart.Add(-time.Nanosecond) }, false},
		{"1970 in +01:00 is 1969 in UTC", func(r *CallRecord) {
			r.TSStart.Time = time.Date(1970, 1, 1, 0, 30, 0, 0, plus1)
			r.TSEnd.Time = r.TSStart.Time
		}, false},
		{"long tool name, multi-byte", func(r *CallRecord) { r.Tool.Name = strings.Repeat("é", 200) }, true},
		{"tool name over 256 characters", func(r *CallRecord) { r.Tool.Name = strings.Repeat("é", 257) }, false},
		{"text that says null", func(r *CallRecord) { r.Outcome.ErrorMessage = "null pointer" }, true},
		{"too large", func(r *CallRecord) {
			for i := range 40 {
				r.Attributes[fmt.Sprint("k", i)] = strings.Repeat("x", 4000)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.mutate(r)
			c, err := r.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			_, errD := Decode(c)
			sealed, errS := r.Seal()
			if (errS == nil) != tc.ok || (errD == nil) != tc.ok {
				t.Fatalf("Seal: %v, Decode: %v, want ok=%v", errS, errD, tc.ok)
			}
			if errS == nil && !bytes.Equal(sealed, c) {
				t.Fatalf("Seal returned other bytes than Canonical")
			}
		})
	}
}
