// Package verify is what an auditor runs: it checks a proof bundle offline
// and audits a live log from its public tiles, with nothing but the log's
// verifier key. It shares no state with the server.
package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/schemas"
)

// Bundle is a self-contained proof that a call record is in the log.
type Bundle struct {
	// Record is the call record as a JSON object; its leaf is its RFC 8785
	// canonical form, so formatting changes do not matter and any change
	// of value does.
	Record json.RawMessage `json:"record"`
	// LeafIndex is the record's position in the log.
	LeafIndex uint64 `json:"leaf_index"`
	// InclusionProof is the RFC 6962 audit path (base64 in JSON).
	InclusionProof [][]byte `json:"inclusion_proof"`
	// Checkpoint is the signed note (C2SP tlog-checkpoint) proven against.
	Checkpoint string `json:"checkpoint"`
}

// Kind names what did not match.
type Kind string

// Kinds of mismatch.
const (
	KindSignature  Kind = "signature"  // checkpoint not signed by the key
	KindCheckpoint Kind = "checkpoint" // checkpoint body malformed or for another log
	KindLeaf       Kind = "leaf"       // the record cannot be a leaf
	KindProof      Kind = "proof"      // inclusion proof does not lead to the root
	KindFork       Kind = "fork"       // the log is not an extension of what was seen before
	KindTile       Kind = "tile"       // a served tile differs from the entries
	KindRoot       Kind = "root"       // the entries do not hash to the signed root
)

// MismatchError says which check failed and how. Anything else returned
// by this package is an I/O or usage problem, not evidence of tampering.
type MismatchError struct {
	Kind   Kind
	Detail string
}

func (e *MismatchError) Error() string { return fmt.Sprintf("%s mismatch: %s", e.Kind, e.Detail) }

func mismatch(k Kind, format string, args ...any) error {
	return &MismatchError{Kind: k, Detail: fmt.Sprintf(format, args...)}
}

// IsMismatch reports whether err is a verification failure.
func IsMismatch(err error) bool {
	var m *MismatchError
	return errors.As(err, &m)
}

// Result describes a verified bundle.
type Result struct {
	Origin    string `json:"origin"`
	TreeSize  uint64 `json:"tree_size"`
	Root      []byte `json:"root"`
	LeafIndex uint64 `json:"leaf_index"`
	LeafHash  []byte `json:"leaf_hash"`
}

// OpenCheckpoint verifies a checkpoint's signature with v and parses it.
func OpenCheckpoint(raw []byte, v note.Verifier) (*log.Checkpoint, error) {
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		return nil, mismatch(KindSignature, "checkpoint is not signed by %s (key %08x): %v", v.Name(), v.KeyHash(), err)
	}
	var cp log.Checkpoint
	if _, err := cp.Unmarshal([]byte(n.Text)); err != nil {
		return nil, mismatch(KindCheckpoint, "malformed checkpoint: %v", err)
	}
	if cp.Origin != v.Name() {
		return nil, mismatch(KindCheckpoint, "checkpoint origin %q, key is for %q", cp.Origin, v.Name())
	}
	return &cp, nil
}

// VerifyBundle checks the checkpoint signature, the record's leaf hash and
// the inclusion proof, in that order, and says which failed.
func VerifyBundle(b *Bundle, v note.Verifier) (*Result, error) {
	cp, err := OpenCheckpoint([]byte(b.Checkpoint), v)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(b.Record)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, mismatch(KindLeaf, "the bundle's record is not a JSON object")
	}
	canon, err := schemas.Canonicalize(trimmed)
	if err != nil {
		return nil, mismatch(KindLeaf, "the bundle's record is not valid JSON: %v", err)
	}
	leafHash := schemas.LeafHash(canon)
	if b.LeafIndex >= cp.Size {
		return nil, mismatch(KindProof, "leaf index %d is outside the checkpoint's tree of size %d", b.LeafIndex, cp.Size)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, b.LeafIndex, cp.Size, leafHash, b.InclusionProof, cp.Hash); err != nil {
		return nil, mismatch(KindProof, "leaf hash %x at index %d does not lead to the signed root %x of tree size %d (record altered, or proof wrong): %v",
			leafHash, b.LeafIndex, cp.Hash, cp.Size, err)
	}
	return &Result{Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash, LeafIndex: b.LeafIndex, LeafHash: leafHash}, nil
}
