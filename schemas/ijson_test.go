package schemas

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// ijsonCases are records that are JSON but not I-JSON (RFC 7493): each
// must be rejected, on both paths, naming every offending member by JSON
// path. Today's encoding/json fallback would store a reading of its own:
// the last of two equal names, U+FFFD for a lone surrogate, 0 for 1e-400,
// a timestamp cut to nanoseconds.
func ijsonCases() []struct {
	name  string
	in    string
	paths []string
	words string // the message says this
} {
	min := strings.TrimSuffix(minimalRecord, "}")
	return []struct {
		name  string
		in    string
		paths []string
		words string
	}{
		{"duplicate nested member", strings.Replace(minimalRecord, `"decision":"allow"`, `"decision":"allow","decision":"deny"`, 1), []string{"$.policy.decision"}, "duplicate"},
		{"second record_id", strings.Replace(minimalRecord, `"record_id":"r1"`, `"record_id":"r1","record_id":"r2"`, 1), []string{"$.record_id"}, "duplicate"},
		{"duplicate spelled with an escape", min + `,"region":"a","r\u0065gion":"b"}`, []string{"$.region"}, "duplicate"},
		{"duplicate attribute", min + `,"attributes":{"a":"1","b":"2","a":"3"}}`, []string{"$.attributes.a"}, "duplicate"},
		{"duplicate deep in an unknown member", min + `,"extra":{"x":[{"k":1,"k":2}]}}`, []string{"$.extra.x[0].k"}, "duplicate"},
		{"lone high surrogate", min + `,"region":"\ud800"}`, []string{"$.region"}, "surrogate"},
		{"lone low surrogate", strings.Replace(minimalRecord, `"name":"t"`, `"name":"t\udc00x"`, 1), []string{"$.tool.name"}, "surrogate"},
		{"high surrogate then not a low one", min + `,"region":"\ud83d\u0041"}`, []string{"$.region"}, "surrogate"},
		{"reversed pair", min + `,"region":"\ude00\ud83d"}`, []string{"$.region"}, "surrogate"},
		{"surrogate in an array", min + `,"scope_grants":["ok","\udfff"]}`, []string{"$.scope_grants[1]"}, "surrogate"},
		{"surrogate in a member name", min + `,"attributes":{"\ud800":"v"}}`, []string{`$.attributes.\ud800`}, "surrogate"},
		{"overflow", min + `,"cost":{"amount":1e400}}`, []string{"$.cost.amount"}, "range"},
		{"negative overflow", min + `,"cost":{"amount":-1e400}}`, []string{"$.cost.amount"}, "range"},
		{"underflow", min + `,"cost":{"amount":1e-400}}`, []string{"$.cost.amount"}, "underflows"},
		{"underflow below the least subnormal", min + `,"cost":{"amount":0.000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002}}`, []string{"$.cost.amount"}, "underflows"},
		{"integer beyond 2^53", min + `,"cost":{"tokens_in":9007199254740993}}`, []string{"$.cost.tokens_in"}, "2^53"},
		{"ten fractional digits", strings.Replace(minimalRecord, `"ts_start":"2026-01-02T03:04:05Z"`, `"ts_start":"2026-01-02T03:04:04.1234567891Z"`, 1), []string{"$.ts_start"}, "fractional digits"},
		{"several at once", strings.Replace(min, `"record_id":"r1"`, `"record_id":"r1","record_id":"r2"`, 1) + `,"region":"\udc00","cost":{"amount":1e-999}}`,
			[]string{"$.cost.amount", "$.record_id", "$.region"}, ""},
	}
}

func TestDecodeRejectsNonIJSON(t *testing.T) {
	for _, tc := range ijsonCases() {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.in)
			if _, _, ok := decodeFast(data); ok {
				t.Error("the fast path accepted it")
			}
			_, err := Decode(data)
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want a ValidationError", err)
			}
			var got []string
			for _, f := range ve.Errors {
				got = append(got, f.Path)
				if !strings.Contains(f.Message, tc.words) {
					t.Errorf("%s: message %q does not say %q", f.Path, f.Message, tc.words)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.paths, ",") {
				t.Fatalf("paths %v, want %v (%v)", got, tc.paths, err)
			}
		})
	}
}

// What I-JSON allows must still be accepted, with its value kept.
func TestDecodeAcceptsIJSONEdges(t *testing.T) {
	min := strings.TrimSuffix(minimalRecord, "}")
	for _, tc := range []struct {
		name, in, want string // want: in the canonical form
	}{
		{"surrogate pair", min + `,"region":"\ud83d\ude00"}`, `"region":"😀"`},
		{"escaped backslash before u", min + `,"region":"a\\ud800"}`, `"region":"a\\ud800"`},
		{"least subnormal", min + `,"cost":{"amount":5e-324}}`, `"amount":5e-324`},
		{"zero with an exponent", min + `,"cost":{"amount":0e-400,"currency":"EUR"}}`, `"cost":{"currency":"EUR"}`},
		{"negative zero", min + `,"cost":{"amount":-0.0,"currency":"EUR"}}`, `"cost":{"currency":"EUR"}`},
		{"nine fractional digits", strings.Replace(minimalRecord, `"ts_end":"2026-01-02T03:04:05Z"`, `"ts_end":"2026-01-02T03:04:05.123456789Z"`, 1), `"ts_end":"2026-01-02T03:04:05.123456789Z"`},
		{"same name in two objects", min + `,"mcp":{"session_id":"s"},"attributes":{"session_id":"s"}}`, `"attributes":{"session_id":"s"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decode([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			c, err := r.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(c), tc.want) {
				t.Fatalf("canonical %s lacks %s", c, tc.want)
			}
		})
	}
}

// A duplicate among many members is found too (names are kept in a set
// once an object has more than a few, so a large object costs linear
// time, not quadratic).
func TestIJSONDuplicateInLargeObject(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"x":{`)
	for i := range 5000 {
		fmt.Fprintf(&b, `"k%d":1,`, i)
	}
	b.WriteString(`"k4321":2}}`)
	bad, err := ijsonErrors([]byte(b.String()))
	if err != nil || len(bad) != 1 || bad[0].Path != "$.x.k4321" {
		t.Fatalf("%v %v, want one duplicate at $.x.k4321", bad, err)
	}
}
