// Package exporters delivers every leaf of a proofline log to downstream
// systems (SIEMs, files, the span store) at least once, in leaf order, each
// event carrying the evidence pointer that proves it.
//
// Exporters follow the log, not the stream: a Runner reads sequenced entries
// from a durable cursor per sink, checks each one against a signed
// checkpoint, hands batches to the sink and moves the cursor only after the
// sink acknowledged them. Replay is "move the cursor back"; no exporter
// needs the signer in its process.
package exporters

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Evidence is the pointer that proves an event: the leaf at LeafIndex of the
// log named Origin is included in the tree of size TreeSize, whose signed
// checkpoint the same sink received (an Anchor) no later than the event.
type Evidence struct {
	Origin    string `json:"log_origin"`
	LeafIndex uint64 `json:"leaf_index"`
	TreeSize  uint64 `json:"tree_size"`
	RecordID  string `json:"record_id"`
}

// Event is one leaf of the log: a call record's canonical JSON (the leaf
// bytes, exactly as logged) and its evidence.
type Event struct {
	Evidence Evidence
	Record   []byte

	// The record's routing fields and start time, read once when the leaf
	// is read.
	region, dataClass, tsStart string
	// notRecord says why a proven leaf is not a call record (the runner
	// dead-letters it); nil for a record.
	notRecord error
}

// StartTime is the call's ts_start (zero when the event was not read from
// a log).
func (e Event) StartTime() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, e.tsStart)
	return t
}

// Anchor is a signed checkpoint, delivered to every sink as an event of its
// own so that the receiving system holds what its events verify against.
type Anchor struct {
	Origin   string
	TreeSize uint64
	RootHash []byte
	// Note is the checkpoint in signed-note form, as served at /checkpoint.
	Note []byte
}

// Batch is what a sink receives: events in leaf order, and the anchor that
// covers the last of them. A batch carries the anchor even when it has no
// events (a checkpoint moved on without new leaves for this sink).
type Batch struct {
	Events []Event
	Anchor *Anchor
}

// Sink is one downstream system.
//
// Send's contract:
//   - nil: the receiver has durably acknowledged every event and the anchor
//     (to the extent the receiver's protocol can say so, documented per sink);
//     the runner moves the cursor past the batch.
//   - a *RejectedError: the events it names can never be delivered (the
//     receiver refuses their content); every other event of the batch was
//     acknowledged. The runner dead-letters the named ones and moves on.
//   - a *ThrottleError: the receiver asked to slow down; nothing of the
//     batch is assumed delivered; the runner waits RetryAfter and resends.
//   - a *FatalError: the sink cannot work as configured (credentials,
//     permissions); nothing is assumed delivered; the runner keeps the
//     cursor, reports the error and retries slowly. Evidence is never
//     dropped because a token expired.
//   - any other error: transient; nothing of the batch is assumed
//     delivered; the runner backs off and resends the whole batch, so a
//     receiver may see an event more than once (at least once).
//
// Send is called by one goroutine at a time. Close releases resources; the
// runner calls it once, after its last Send.
type Sink interface {
	Send(ctx context.Context, b Batch) error
	Close(ctx context.Context) error
}

// RejectedError says which events of a batch the receiver refused for good.
type RejectedError struct {
	// Reasons maps an index into Batch.Events to the receiver's reason.
	Reasons map[int]string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("receiver rejected %d event(s)", len(e.Reasons))
}

// ThrottleError asks the runner to wait before resending.
type ThrottleError struct {
	RetryAfter time.Duration
	Err        error
}

func (e *ThrottleError) Error() string {
	return fmt.Sprintf("throttled for %s: %v", e.RetryAfter, e.Err)
}
func (e *ThrottleError) Unwrap() error { return e.Err }

// FatalError means the sink is misconfigured or not allowed to deliver.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return "sink cannot deliver: " + e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// Fatal wraps err as a FatalError.
func Fatal(err error) error { return &FatalError{Err: err} }

// Throttle wraps err as a ThrottleError.
func Throttle(after time.Duration, err error) error {
	return &ThrottleError{RetryAfter: after, Err: err}
}

// classify names an error's class for logs and metrics.
func classify(err error) string {
	var rej *RejectedError
	var thr *ThrottleError
	var fat *FatalError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &rej):
		return "rejected"
	case errors.As(err, &thr):
		return "throttled"
	case errors.As(err, &fat):
		return "fatal"
	default:
		return "transient"
	}
}
