package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/ingest/publish"
)

// Dead-letter reasons: a short class a tool can filter on, next to the
// message in HeaderDeadLetterReason.
const (
	// ReasonConflict: the record's id is held by a different record in
	// the log (or by a different record appended at the same time).
	ReasonConflict = "conflict"
	// ReasonInvalid: the message is not a call record in canonical form.
	ReasonInvalid = "invalid"
	// reasonUnclassified is reported for dead letters stored without a
	// class (by earlier versions, or by a consumer that gives none).
	reasonUnclassified = "error"
)

const (
	// HeaderDeadLetterClass carries the reason's class (ReasonConflict…).
	HeaderDeadLetterClass = "Proofline-Reason"
	// HeaderDeadLetterRecordID carries the record id, when known.
	HeaderDeadLetterRecordID = "Proofline-Record-Id"
)

// RecordIDOf is the record id in a CALLS message's Nats-Msg-Id.
func RecordIDOf(msgID string) string { return publish.RecordIDOf(msgID) }

// DeadLetterRecord stores a record consumer could not take on the
// dead-letter stream with its reason class, its record id and the error,
// and waits for JetStream to confirm it.
func (b *Bus) DeadLetterRecord(ctx context.Context, consumer, reason, recordID string, data []byte, cause error) error {
	m := &nats.Msg{Subject: SubjectDeadLetterPrefix + consumer, Data: data, Header: nats.Header{}}
	m.Header.Set(HeaderDeadLetterReason, cause.Error())
	m.Header.Set(HeaderDeadLetterClass, reason)
	if recordID != "" {
		m.Header.Set(HeaderDeadLetterRecordID, recordID)
	}
	if _, err := b.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	return nil
}

// DeadLetterEntry describes one dead letter, without the record itself
// (which may belong to another principal).
type DeadLetterEntry struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Consumer string    `json:"consumer"`
	Reason   string    `json:"reason"`
	Error    string    `json:"error"`
	RecordID string    `json:"record_id,omitempty"`
}

// DeadLetterPage is one page of DeadLetters.
type DeadLetterPage struct {
	DeadLetters []DeadLetterEntry `json:"dead_letters"`
	// Next is the cursor (a stream sequence) to pass as after for the
	// following page; 0 when there is nothing after this page.
	Next uint64 `json:"next,omitempty"`
}

// maxDeadLetterScan bounds the messages one DeadLetters call reads while
// filtering, so a request over a large stream stays short.
const maxDeadLetterScan = 10_000

// DeadLetters lists dead letters after the stream sequence after, oldest
// first, at most limit, keeping only those of the given reason class
// (any when empty). It reads messages one by one with the stream's
// "next message on subject" get, which skips the gaps left by expired
// ones without a consumer to create or clean up.
func (b *Bus) DeadLetters(ctx context.Context, after uint64, limit int, reason string) (*DeadLetterPage, error) {
	s, err := b.JS.Stream(ctx, DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", DeadLetterStream, err)
	}
	last := s.CachedInfo().State.LastSeq
	page := &DeadLetterPage{DeadLetters: []DeadLetterEntry{}}
	seq := after + 1
	for scanned := 0; seq <= last; scanned++ {
		if len(page.DeadLetters) == limit || scanned == maxDeadLetterScan {
			page.Next = seq - 1
			return page, nil
		}
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(SubjectDeadLetterPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		seq = m.Sequence + 1
		e := deadLetterEntry(m)
		if reason == "" || e.Reason == reason {
			page.DeadLetters = append(page.DeadLetters, e)
		}
	}
	return page, nil
}

func deadLetterEntry(m *jetstream.RawStreamMsg) DeadLetterEntry {
	e := DeadLetterEntry{
		Seq: m.Sequence, Time: m.Time.UTC(),
		Consumer: strings.TrimPrefix(m.Subject, SubjectDeadLetterPrefix),
		Reason:   m.Header.Get(HeaderDeadLetterClass),
		Error:    m.Header.Get(HeaderDeadLetterReason),
		RecordID: m.Header.Get(HeaderDeadLetterRecordID),
	}
	if e.Reason == "" {
		e.Reason = reasonUnclassified
	}
	if e.RecordID == "" {
		// Dead letters stored without the header: the record's own id,
		// if it is a JSON object that has one.
		var r struct {
			RecordID string `json:"record_id"`
		}
		if json.Unmarshal(m.Data, &r) == nil {
			e.RecordID = r.RecordID
		}
	}
	return e
}
