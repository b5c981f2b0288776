package exporters

import (
	"encoding/json"
)

// NativeEvent is proofline's own JSON encoding of an event: the record as
// logged (its canonical bytes, untouched, so its SHA-256 is the leaf's
// content) beside its evidence.
type NativeEvent struct {
	Type     string          `json:"type"` // "proofline.call"
	Evidence Evidence        `json:"evidence"`
	Record   json.RawMessage `json:"record"`
}

// NativeAnchor is proofline's own JSON encoding of a checkpoint event.
type NativeAnchor struct {
	Type       string `json:"type"` // "proofline.checkpoint"
	Origin     string `json:"log_origin"`
	TreeSize   uint64 `json:"tree_size"`
	RootHash   []byte `json:"root_hash"`
	Checkpoint string `json:"checkpoint"`
}

// Event types of the native encoding.
const (
	TypeCall       = "proofline.call"
	TypeCheckpoint = "proofline.checkpoint"
)

// EncodeNative encodes e as one JSON object (no trailing newline).
func EncodeNative(e Event) ([]byte, error) {
	return json.Marshal(NativeEvent{Type: TypeCall, Evidence: e.Evidence, Record: e.Record})
}

// EncodeNativeAnchor encodes a as one JSON object (no trailing newline).
func EncodeNativeAnchor(a *Anchor) ([]byte, error) {
	return json.Marshal(NativeAnchor{Type: TypeCheckpoint, Origin: a.Origin, TreeSize: a.TreeSize, RootHash: a.RootHash, Checkpoint: string(a.Note)})
}
