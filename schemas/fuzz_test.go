package schemas

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

// isCanonicalViaV2 is IsCanonicalRecord decoding with JSON v2 only: the
// reference the scanner's use in it is held to.
func isCanonicalViaV2(data []byte) (*CallRecord, bool) {
	if !utf8.Valid(data) {
		return nil, false
	}
	r, ok := decodeV2(data)
	if !ok {
		return nil, false
	}
	c, err := r.canonical()
	if err != nil || !bytes.Equal(c, data) {
		return nil, false
	}
	return r, true
}

// FuzzDecodeCanonical checks that the decoder never panics, and that for
// every record it accepts, the canonical form is stable: decoding it again
// gives the same canonical bytes, and canonicalising it is a no-op. A leaf
// hash that depended on anything but the record's content would break
// every proof.
//
// It also holds Decode's two decoders to one reading of every input: the
// fast path (the scanner, else JSON v2) and the fallback (encoding/json
// under the JSON Schema validator) agree on accept/reject and on the
// canonical bytes. The fast path may say "not sure" (its validity checks
// are conservative), so agreement is: Decode, whichever path answered,
// accepts exactly what the fallback accepts, with the same bytes; what
// the fast path accepts the fallback accepts; and for whatever the
// fallback accepts, the fast decoders decode the same record — so input
// that is not I-JSON (duplicate names, lone surrogates, numbers a double
// does not hold, over-long fractions), which the fallback rejects, is
// never taken by the fast path either.
func FuzzDecodeCanonical(f *testing.F) {
	for _, s := range []string{
		fullRecord, minimalRecord, `{}`, `[]`, `null`, `{"record_id":1}`,
		`{"record_id":"r","ts_start":"2026-01-02T03:04:05.123456789-07:00","ts_end":"2026-01-02T10:04:05.2Z","actor":{"id":"\u2028","type":"service"},"tool":{"name":"t\ud83d\ude00"},"policy":{"decision":"deny"},"outcome":{"status":"timeout"},"cost":{"amount":1e-7,"tokens_in":1.0}}`,
		`{"record_id":"r","ts_start":"2026-01-02T03:04:05Z","ts_end":"2026-01-02T03:04:05Z","actor":{"id":"a","type":"user"},"tool":{"name":"t"},"policy":{"decision":"allow"},"outcome":{"status":"ok"},"attributes":{"":"x"}}`,
		`{"record_id":"r","ts_start":"2026-01-02T03:04:05Z","ts_end":"2026-01-02T03:04:05Z","actor":{"id":"a\u0001\u001f\"\\\u007f<>&\u2028","type":"user"},"tool":{"name":"t"},"policy":{"decision":"allow"},"outcome":{"status":"ok"},"mcp":{},"cost":{"amount":123456789012.5},"attributes":{"\ud83d\ude00":"1","\uffff":"2","a":"3"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"record_id":"r","RECORD_ID":"x","ts_start":"2026-01-02T03:04:05Z","ts_end":"2026-01-02T03:04:05Z","actor":{"id":"a","type":"user"},"tool":{"name":"t"},"policy":{"decision":"allow"},"outcome":{"status":"ok"}}`))
	f.Add([]byte(`{"record_id":"r","record_id":"s","ts_start":"2026-01-02T03:04:05Z","ts_end":"2026-01-02T03:04:05Z","actor":{"id":"a","type":"user"},"tool":{"name":"t"},"policy":{"decision":"allow"},"outcome":{"status":"ok"}}`))
	for _, c := range ijsonCases() {
		f.Add([]byte(c.in))
	}
	// Canonical forms, which IsCanonicalRecord accepts: the seeds above
	// that are records, and realistic ones.
	for _, c := range canonicalForms(f, append([][]byte{[]byte(fullRecord), []byte(minimalRecord)}, realisticRecords(4)...)) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// IsCanonicalRecord decodes with the scanner where it can: it must
		// answer as with JSON v2 alone, on every input.
		got, gotOK := IsCanonicalRecord(data)
		want, wantOK := isCanonicalViaV2(data)
		if gotOK != wantOK || gotOK && !reflect.DeepEqual(got, want) {
			t.Fatalf("IsCanonicalRecord %v %+v, with JSON v2 alone %v %+v:\n%s", gotOK, got, wantOK, want, data)
		}
		// The one-pass scanner must agree with JSON v2 on all it accepts;
		// like the fast path, it is only given valid UTF-8 (Decode's check).
		valid := utf8.Valid(data)
		if scanned, sc, ok := decodeScan(data); valid && ok {
			// What the scanner saw as canonical must be the canonical form.
			if c, err := scanned.canonical(); sc.canonical && (err != nil || !bytes.Equal(c, data)) {
				t.Fatalf("the scanner saw a canonical form in non-canonical input:\n%s\n%s", data, c)
			}
			v2, ok := decodeV2(data)
			if !ok {
				t.Fatalf("scanner accepted what JSON v2 rejects:\n%s", data)
			}
			if !reflect.DeepEqual(scanned, v2) {
				t.Fatalf("scanner and JSON v2 decode differently:\n%+v\n%+v\n%s", scanned, v2, data)
			}
		}
		if fast, _, ok := decodeFast(data); valid && ok {
			slow, err := decodeSchema(data)
			if err != nil {
				t.Fatalf("fast path accepted what the schema rejects: %v\n%s", err, data)
			}
			cf, _ := fast.Canonical()
			cs, _ := slow.Canonical()
			if !bytes.Equal(cf, cs) {
				t.Fatalf("fast and schema paths decode differently:\n%s\n%s", cf, cs)
			}
		}
		if valid && len(data) <= MaxRecordBytes {
			slow, errSlow := decodeSchema(data)
			got, errGot := Decode(data)
			if (errGot == nil) != (errSlow == nil) {
				t.Fatalf("Decode says %v, the fallback says %v:\n%s", errGot, errSlow, data)
			}
			if errSlow == nil {
				cs, _ := slow.Canonical()
				cg, _ := got.Canonical()
				if !bytes.Equal(cg, cs) {
					t.Fatalf("Decode and the fallback give different bytes:\n%s\n%s", cg, cs)
				}
				v2, ok := decodeV2(data)
				if !ok {
					t.Fatalf("the fallback accepted what JSON v2 rejects:\n%s", data)
				}
				if c2, _ := v2.Canonical(); !bytes.Equal(c2, cs) {
					t.Fatalf("JSON v2 and the fallback decode differently:\n%s\n%s", c2, cs)
				}
			}
		}
		// Seal must accept a struct exactly when Decode accepts its
		// canonical bytes, whatever the struct holds.
		var loose CallRecord
		if json.Unmarshal(data, &loose) == nil {
			if c, err := loose.Canonical(); err == nil {
				_, errD := Decode(c)
				sealed, errS := loose.Seal()
				if (errS == nil) != (errD == nil) {
					t.Fatalf("Seal says %v, Decode of the canonical form says %v:\n%s", errS, errD, c)
				}
				if errS == nil && !bytes.Equal(sealed, c) {
					t.Fatalf("Seal changed the canonical form:\n%s\n%s", sealed, c)
				}
			}
		}
		r, err := Decode(data)
		if err != nil {
			return
		}
		c1, err := r.Canonical()
		if err != nil {
			t.Fatalf("accepted record does not canonicalise: %v", err)
		}
		r2, err := Decode(c1)
		if err != nil {
			t.Fatalf("canonical form %s is rejected: %v", c1, err)
		}
		c2, err := r2.Canonical()
		if err != nil || !bytes.Equal(c1, c2) {
			t.Fatalf("canonical form not stable:\n%s\n%s", c1, c2)
		}
		c3, err := Canonicalize(c1)
		if err != nil || !bytes.Equal(c1, c3) {
			t.Fatalf("Canonicalize(canonical) changed it:\n%s\n%s", c1, c3)
		}
		ref, err := r.canonicalViaJCS()
		if err != nil || !bytes.Equal(c1, ref) {
			t.Fatalf("direct encoder differs from jcs.Transform(json.Marshal):\n%s\n%s", c1, ref)
		}
		if _, ok := IsCanonicalRecord(c1); !ok {
			t.Fatalf("IsCanonicalRecord rejects a canonical record: %s", c1)
		}
		if _, ok := IsCanonicalRecord(data); ok && !bytes.Equal(data, c1) {
			t.Fatalf("IsCanonicalRecord accepts non-canonical input: %s", data)
		}
		// DecodeFrom, which splices the principal into canonical input,
		// gives the bytes of the record stamped and encoded again.
		for _, principal := range []string{"", "gw-1", "zz", `a"b`, r.IngestedBy} {
			for _, in := range [][]byte{data, c1} {
				stamped, got, err := DecodeFrom(in, principal)
				if err != nil {
					t.Fatalf("DecodeFrom rejects what Decode accepts: %v\n%s", err, in)
				}
				want := *r
				want.IngestedBy = principal
				wc, _ := want.canonical()
				if !bytes.Equal(got, wc) || stamped.IngestedBy != principal {
					t.Fatalf("DecodeFrom(%q):\n%s\nwant\n%s", principal, got, wc)
				}
			}
		}
	})
}
