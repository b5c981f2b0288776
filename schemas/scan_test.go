package schemas

import (
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
			scanned, ok := decodeScan([]byte(tc.in))
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
