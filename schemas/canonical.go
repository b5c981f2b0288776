package schemas

import (
	"encoding/json"
	"fmt"

	"github.com/gowebpki/jcs"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Canonical returns the record's RFC 8785 canonical JSON: the bytes of its
// leaf in the log.
func (r *CallRecord) Canonical() ([]byte, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("marshal record: %w", err)
	}
	return Canonicalize(raw)
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
