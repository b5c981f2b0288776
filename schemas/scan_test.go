package schemas

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// The scanner takes the plain common case and leaves everything else to
// JSON v2; what it takes it must decode exactly as JSON v2 does.
func TestScanAgreesWithV2(t *testing.T) {
	min := strings.TrimSuffix(minimalRecord, "}")
	for _, tc := range []struct {
		name    string
		in      string
		scanned bool // the scanner decodes it (else it leaves it to JSON v2)
	}{
		{"full", fullRecord, true},
		{"minimal", minimalRecord, true},
		{"empty lists and maps", min + `,"scope_grants":[],"attributes":{},"mcp":{}}`, true},
		{"numbers", min + `,"cost":{"amount":-0.5e-3,"tokens_in":0,"tokens_out":9007199254740993}}`, true},
		{"escape in a string", min + `,"region":"eu\u002dwest"}`, false},
		{"escaped quote", min + `,"region":"a\"b"}`, false},
		{"duplicate member", min + `,"region":"a","region":"b"}`, false},
		{"duplicate nested member", strings.Replace(minimalRecord, `"type":"user"`, `"type":"user","type":"agent"`, 1), false},
		{"duplicate attribute", min + `,"attributes":{"a":"1","a":"2"}}`, false},
		{"unknown member", min + `,"colour":"blue"}`, false},
		{"member in another case", min + `,"Region":"x"}`, false},
		{"trailing data", minimalRecord + ` {}`, false},
		{"trailing comma", min + `,}`, false},
		{"leading zero", min + `,"cost":{"tokens_in":012}}`, false},
		{"integer written as float", min + `,"cost":{"tokens_in":1.0}}`, false},
		{"integer out of range", min + `,"cost":{"tokens_in":99999999999999999999}}`, false},
		{"float out of range", min + `,"cost":{"amount":1e999}}`, false},
		{"boolean", min + `,"region":true}`, false},
		{"bad timestamp", strings.Replace(minimalRecord, "2026-01-02T03:04:05Z", "yesterday", 1), false},
		{"not an object", `["r1"]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scanned, _, ok := decodeScan([]byte(tc.in))
			if ok != tc.scanned {
				t.Fatalf("scanned = %v, want %v", ok, tc.scanned)
			}
			if !ok {
				return
			}
			v2, ok := decodeV2([]byte(tc.in))
			if !ok {
				t.Fatal("JSON v2 rejects what the scanner accepted")
			}
			if !reflect.DeepEqual(scanned, v2) {
				t.Fatalf("scanner %+v\nJSON v2 %+v", scanned, v2)
			}
		})
	}
}

// The scanner notes whether its input is already the canonical form, so
// that the signer's check and ingest skip writing it again: it must never
// say so of anything else, and should of the forms producers send.
func TestScanSeesCanonicalForm(t *testing.T) {
	base := string(canonicalForms(t, [][]byte{[]byte(minimalRecord)})[0])
	// with inserts extra members after "actor" (the first member), where
	// those named below belong in canonical order.
	with := func(members string) string {
		return strings.Replace(base, `"type":"user"},`, `"type":"user"},`+members+`,`, 1)
	}
	for _, tc := range []struct {
		name string
		in   string
		want bool
		// conservative: canonical, but left to the encoder to say so.
		conservative bool
	}{
		{"as encoded", base, true, false},
		{"all optional members", with(`"args_sha256":"ab","attributes":{"a":"1","b":"2"},"cost":{"amount":1.5,"currency":"EUR","tokens_in":7,"tokens_out":-3},"data_class":"pii","elevation":{"approver":"boss","expires":"2026-01-02T03:04:05.000000000Z","reason":"why","scopes":[]},"ingested_by":"gw","mcp":{}`), true, false},
		{"trace", with(`"trace":{"parent_span_id":"1","span_id":"2","trace_id":"3"}`), false, false}, // misplaced: trace sorts after tool
		{"space after a colon", strings.Replace(base, `"actor":`, `"actor": `, 1), false, false},
		{"newline at the end", base + "\n", false, false},
		{"members out of order", `{"record_id":"r1",` + strings.Replace(base[1:], `"record_id":"r1",`, "", 1), false, false},
		{"time with an offset", strings.Replace(base, `"ts_end":"2026-01-02T03:04:05.000000000Z"`, `"ts_end":"2026-01-02T04:04:05.000000000+01:00"`, 1), false, false},
		{"time without its nanoseconds", strings.Replace(base, `"ts_end":"2026-01-02T03:04:05.000000000Z"`, `"ts_end":"2026-01-02T03:04:05Z"`, 1), false, false},
		{"amount with a trailing zero", with(`"cost":{"amount":1.50}`), false, false},
		{"amount with an exponent", with(`"cost":{"amount":15e-1}`), false, false},
		{"zero amount", with(`"cost":{"amount":0}`), false, false},
		{"zero tokens", with(`"cost":{"tokens_in":0}`), false, false},
		{"minus zero tokens", with(`"cost":{"tokens_out":-0}`), false, false},
		{"empty cost", with(`"cost":{}`), true, false},
		{"empty attributes", with(`"attributes":{}`), false, false},
		{"attributes out of order", with(`"attributes":{"b":"1","a":"2"}`), false, false},
		{"attribute beyond the BMP", with(`"attributes":{"😀":"1"}`), false, true},
		{"empty scope grants", strings.Replace(base, `"record_id":"r1",`, `"record_id":"r1","scope_grants":[],`, 1), false, false},
		{"scope grants", strings.Replace(base, `"record_id":"r1",`, `"record_id":"r1","scope_grants":["a","b"],`, 1), true, false},
		{"elevation without scopes", with(`"elevation":{"approver":"boss"}`), false, false},
		{"trace without a span id", strings.Replace(base, `"tool":{"name":"t"},`, `"tool":{"name":"t"},"trace":{"trace_id":"3"},`, 1), false, false},
		{"trace in place", strings.Replace(base, `"tool":{"name":"t"},`, `"tool":{"name":"t"},"trace":{"span_id":"2","trace_id":"3"},`, 1), true, false},
		{"no ts_end", strings.Replace(base, `"ts_end":"2026-01-02T03:04:05.000000000Z",`, "", 1), false, false},
		{"no policy", strings.Replace(base, `"policy":{"decision":"allow"},`, "", 1), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.in)
			rec, sc, ok := decodeScan(data)
			if !ok {
				t.Fatalf("not scanned: %s", data)
			}
			if sc.canonical != tc.want {
				t.Fatalf("canonical = %v, want %v: %s", sc.canonical, tc.want, data)
			}
			enc, err := rec.canonical()
			if err != nil {
				t.Fatal(err)
			}
			if is := bytes.Equal(enc, data); is != (tc.want || tc.conservative) {
				t.Fatalf("the case is wrong: canonical form %s, input %s", enc, data)
			}
		})
	}
}

// DecodeFrom stamps the principal over whatever the record said, and
// gives the bytes the record has encoded again, whether it put the
// principal into the input or encoded it anew.
func TestDecodeFrom(t *testing.T) {
	r, err := Decode([]byte(minimalRecord))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.canonical()
	r.IngestedBy = "old"
	withOld, _ := r.canonical()
	for _, tc := range []struct {
		name, in, principal string
	}{
		{"canonical, no ingested_by", string(c), "gw-1"},
		{"canonical, another ingested_by", string(withOld), "gw-1"},
		{"canonical, same ingested_by", string(withOld), "old"},
		{"canonical, no principal", string(withOld), ""},
		{"principal needing escapes", string(c), "a\"b\\c\n"},
		{"principal sorting last", string(c), "~"},
		{"not canonical", minimalRecord, "gw-1"},
		{"full record", fullRecord, "gw-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, got, err := DecodeFrom([]byte(tc.in), tc.principal)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := Decode([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			ref.IngestedBy = tc.principal
			want, _ := ref.canonical()
			if !bytes.Equal(got, want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
			if rec.IngestedBy != tc.principal {
				t.Fatalf("ingested_by %q, want %q", rec.IngestedBy, tc.principal)
			}
			if _, ok := IsCanonicalRecord(got); !ok {
				t.Fatalf("not canonical: %s", got)
			}
		})
	}
}
