package verify

import (
	"errors"
	"fmt"
)

// Kind names the check that failed.
type Kind string

// Kinds of mismatch, from the checkpoint down to the tiles.
const (
	KindSignature  Kind = "signature"  // the checkpoint is not signed by the key, or its text was altered
	KindCheckpoint Kind = "checkpoint" // the signed checkpoint is malformed or is another log's
	KindLeaf       Kind = "leaf"       // the record cannot be a leaf (not a JSON object)
	KindProof      Kind = "proof"      // the inclusion proof does not lead from the leaf to the signed root
	KindFork       Kind = "fork"       // the log does not extend the tree seen at the previous audit
	KindRollback   Kind = "rollback"   // the log's signed tree is smaller than one seen before (Follow)
	KindTile       Kind = "tile"       // a served hash tile differs from what the entries give
	KindRoot       Kind = "root"       // the served entries do not hash to the signed root
)

// MismatchError says which check failed and what did not match. It is
// evidence against the log (or the bundle); any other error from this
// package is an I/O or usage problem. The CLI exits 1 on it, 2 otherwise.
type MismatchError struct {
	Kind   Kind
	Detail string
}

func (e *MismatchError) Error() string { return fmt.Sprintf("%s mismatch: %s", e.Kind, e.Detail) }

// mismatch is a *MismatchError as an error, for returning.
func mismatch(k Kind, format string, args ...any) error {
	return newMismatch(k, format, args...)
}

func newMismatch(k Kind, format string, args ...any) *MismatchError {
	return &MismatchError{Kind: k, Detail: fmt.Sprintf(format, args...)}
}

// IsMismatch reports whether err is (or wraps) a *MismatchError.
func IsMismatch(err error) bool {
	var m *MismatchError
	return errors.As(err, &m)
}
