package schemas

import (
	"bytes"
	"testing"
)

// FuzzDecodeCanonical checks that the decoder never panics, and that for
// every record it accepts, the canonical form is stable: decoding it again
// gives the same canonical bytes, and canonicalising it is a no-op. A leaf
// hash that depended on anything but the record's content would break
// every proof.
func FuzzDecodeCanonical(f *testing.F) {
	for _, s := range []string{
		fullRecord, minimalRecord, `{}`, `[]`, `null`, `{"record_id":1}`,
		`{"record_id":"r","ts_start":"2026-01-02T03:04:05.123456789-07:00","ts_end":"2026-01-02T10:04:05.2Z","actor":{"id":"\u2028","type":"service"},"tool":{"name":"t\ud83d\ude00"},"policy":{"decision":"deny"},"outcome":{"status":"timeout"},"cost":{"amount":1e-7,"tokens_in":1.0}}`,
		`{"record_id":"r","ts_start":"2026-01-02T03:04:05Z","ts_end":"2026-01-02T03:04:05Z","actor":{"id":"a","type":"user"},"tool":{"name":"t"},"policy":{"decision":"allow"},"outcome":{"status":"ok"},"attributes":{"":"x"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
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
	})
}
