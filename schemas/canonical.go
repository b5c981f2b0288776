package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Canonical returns the record's RFC 8785 canonical JSON: the bytes of its
// leaf in the log.
func (r *CallRecord) Canonical() ([]byte, error) { return r.canonical() }

// canonicalViaJCS is the reference the direct encoder is tested against.
func (r *CallRecord) canonicalViaJCS() ([]byte, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("marshal record: %w", err)
	}
	return Canonicalize(raw)
}

// IsCanonicalRecord reports whether data is exactly the canonical form of
// a call record, and returns the record. The signer checks every message
// with it (unless attested by ingest): a leaf must be the bytes an auditor
// re-derives from the record; the span store checks every leaf it reads.
//
// It decodes with Decode's scanner where it can (an ordinary record's
// canonical bytes are what it handles: strings without escapes, plain
// numbers), JSON v2 otherwise; the scanner decodes what it accepts as
// JSON v2 does (FuzzDecodeCanonical). When the scanner saw the canonical
// form as it read (the common case), that is the answer; otherwise the
// record's canonical form is written and must be data byte for byte.
func IsCanonicalRecord(data []byte) (*CallRecord, bool) {
	if !utf8.Valid(data) {
		return nil, false
	}
	r, sc, ok := decodeScan(data)
	if ok && sc.canonical {
		return r, true
	}
	if !ok {
		if r, ok = decodeV2(data); !ok {
			return nil, false
		}
	}
	c, err := r.canonical()
	if err != nil || !bytes.Equal(c, data) {
		return nil, false
	}
	return r, true
}

// Canonicalize returns the RFC 8785 canonical form of any JSON text. The
// offline verifier uses it on the record inside a proof bundle, so that a
// bundle pretty-printed on the way still verifies and any change of value
// does not.
func Canonicalize(raw []byte) ([]byte, error) {
	out, err := jcs.Transform(raw)
	if err != nil {
		return nil, fmt.Errorf("canonicalize: %w", err)
	}
	return out, nil
}

// LeafHash is the RFC 6962 leaf hash of canonical record bytes:
// SHA-256(0x00 || canonical).
func LeafHash(canonical []byte) []byte {
	return rfc6962.DefaultHasher.HashLeaf(canonical)
}

// Seal returns the canonical bytes of a record built in Go (by the MCP hook
// or the collector exporter, not decoded from a client's JSON), after
// checking it against the contract exactly as Decode would check those
// bytes. The common case costs the fast checks on the struct; whatever
// they are not sure of goes through Decode, whose error lists every bad
// field. Re-decoding every record, as producers did, was most of their
// per-record work.
func (r *CallRecord) Seal() ([]byte, error) {
	data, err := r.canonical()
	if err != nil {
		return nil, err
	}
	// The same guards as Decode's fast path, on the same bytes; the times
	// are checked as the canonical form has them, in UTC.
	u := *r
	u.TSStart.Time, u.TSEnd.Time = r.TSStart.UTC(), r.TSEnd.UTC()
	if len(data) <= MaxRecordBytes && utf8.Valid(data) && !bytes.Contains(data, []byte("null")) &&
		!bytes.Contains(data, []byte(`""`)) && u.fastValid() {
		return data, nil
	}
	if _, err := Decode(data); err != nil {
		return nil, err
	}
	return data, nil
}
