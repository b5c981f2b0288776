// Package verify is what an auditor runs: it checks a proof bundle offline
// (VerifyBundle) and audits a live log from its public tlog-tiles
// resources (Audit), with nothing but the log's verifier key. It shares no
// code or state with the writer beyond the specs (C2SP signed-note,
// tlog-checkpoint and tlog-tiles, RFC 6962, RFC 8785), so a bug on the
// writing side is not silently mirrored here.
package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"

	"github.com/gowebpki/jcs"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Bundle is a self-contained proof that a call record is in the log.
type Bundle struct {
	// Record is the call record as a JSON object. Its leaf is its RFC 8785
	// canonical form, so re-formatting does not matter and any change of
	// value does.
	Record json.RawMessage `json:"record"`
	// LeafIndex is the record's position in the log.
	LeafIndex uint64 `json:"leaf_index"`
	// InclusionProof is the RFC 6962 audit path (base64 in JSON).
	InclusionProof [][]byte `json:"inclusion_proof"`
	// Checkpoint is the signed note (C2SP tlog-checkpoint) proven against.
	Checkpoint string `json:"checkpoint"`
}

// Result describes a verified bundle.
type Result struct {
	Origin    string `json:"origin"`
	TreeSize  uint64 `json:"tree_size"`
	Root      []byte `json:"root"`
	LeafIndex uint64 `json:"leaf_index"`
	LeafHash  []byte `json:"leaf_hash"`
	// Witnesses says who cosigned the checkpoint, when a witness policy
	// was checked.
	Witnesses *WitnessResult `json:"witnesses,omitempty"`
}

// OpenCheckpoint verifies a checkpoint's signature with v and parses it.
// The origin must be v's name: a key only vouches for its own log.
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
		return nil, mismatch(KindCheckpoint, "checkpoint origin %q, the key is for %q", cp.Origin, v.Name())
	}
	if len(cp.Hash) != sha256.Size {
		return nil, mismatch(KindCheckpoint, "checkpoint root is %d bytes, want %d", len(cp.Hash), sha256.Size)
	}
	return &cp, nil
}

// VerifyBundle checks, in order, the checkpoint's signature, that the
// record can be a leaf, and the inclusion proof; a *MismatchError says
// which failed.
func VerifyBundle(b *Bundle, v note.Verifier) (*Result, error) {
	if b == nil {
		return nil, errors.New("no bundle")
	}
	cp, err := OpenCheckpoint([]byte(b.Checkpoint), v)
	if err != nil {
		return nil, err
	}
	leafHash, err := recordLeafHash(b.Record)
	if err != nil {
		return nil, err
	}
	if b.LeafIndex >= cp.Size {
		return nil, mismatch(KindProof, "leaf index %d is outside the checkpoint's tree of size %d", b.LeafIndex, cp.Size)
	}
	// A wrong record and a wrong proof look the same from here: the path
	// from this leaf hash does not reach the root. The detail gives both
	// ends so the user can see what did not match.
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, b.LeafIndex, cp.Size, leafHash, b.InclusionProof, cp.Hash); err != nil {
		return nil, mismatch(KindProof, "leaf hash %x does not match the proof for index %d against root %x (tree size %d): %v",
			leafHash, b.LeafIndex, cp.Hash, cp.Size, err)
	}
	return &Result{Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash, LeafIndex: b.LeafIndex, LeafHash: leafHash}, nil
}

// recordLeafHash is the leaf hash of a call record: the RFC 6962 leaf hash
// of its RFC 8785 canonical JSON, the bytes the log stores.
func recordLeafHash(record []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(record)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, mismatch(KindLeaf, "the record is not a JSON object")
	}
	canon, err := jcs.Transform(trimmed)
	if err == nil && !json.Valid(trimmed) {
		err = errors.New("rejected by encoding/json")
	}
	if err != nil {
		return nil, mismatch(KindLeaf, "the record is not valid JSON: %v", err)
	}
	return rfc6962.DefaultHasher.HashLeaf(canon), nil
}
