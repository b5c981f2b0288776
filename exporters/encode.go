package exporters

import (
	"encoding/json"
	"strconv"
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

// EncodeNative encodes e as one JSON object (no trailing newline). It
// writes the bytes itself rather than through json.Marshal: the record is
// the leaf's canonical JSON already, and Marshal would re-validate and
// re-compact it for every event (the largest cost of a file sink).
func EncodeNative(e Event) ([]byte, error) {
	return AppendNative(make([]byte, 0, len(e.Record)+160), e), nil
}

// AppendNative appends EncodeNative's encoding of e to b: a sink that
// writes many events into one buffer encodes each without allocating.
func AppendNative(b []byte, e Event) []byte {
	ev := e.Evidence
	b = append(b, `{"type":"`+TypeCall+`","evidence":{"log_origin":`...)
	b = appendJSONString(b, ev.Origin)
	b = append(b, `,"leaf_index":`...)
	b = strconv.AppendUint(b, ev.LeafIndex, 10)
	b = append(b, `,"tree_size":`...)
	b = strconv.AppendUint(b, ev.TreeSize, 10)
	b = append(b, `,"record_id":`...)
	b = appendJSONString(b, ev.RecordID)
	b = append(b, `},"record":`...)
	b = append(b, e.Record...)
	return append(b, '}')
}

// EncodeNativeAnchor encodes a as one JSON object (no trailing newline).
func EncodeNativeAnchor(a *Anchor) ([]byte, error) {
	return json.Marshal(NativeAnchor{Type: TypeCheckpoint, Origin: a.Origin, TreeSize: a.TreeSize, RootHash: a.RootHash, Checkpoint: string(a.Note)})
}

// appendJSONString appends s as a JSON string (the evidence strings are
// short; json.Marshal escapes them exactly as JSON requires).
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
