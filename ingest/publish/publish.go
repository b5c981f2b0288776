// Package publish puts call records on proofline's CALLS stream. It is the
// one piece every producer shares (HTTP ingest, the MCP hook's outbox, the
// collector exporter), so it depends on nats.go alone: a Go MCP server that
// imports the hook must not link nats-server, tessera or Pebble
// (TestProducersStayLean).
package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/internal/attest"
)

const (
	// Stream is the JetStream stream holding every call record.
	Stream = "CALLS"
	// Subject is the subject call records are published on.
	Subject = "proofline.calls.v1"
)

// Message is one canonical call record ready for the stream.
type Message struct {
	RecordID string
	Data     []byte
}

// PubResult is what JetStream said about one message.
type PubResult struct {
	Seq       uint64
	Duplicate bool
}

// Publisher puts call records on the CALLS stream. Every producer (HTTP
// ingest, the MCP hook, the collector exporter) publishes through it so the
// message id, subject and header conventions exist once.
type Publisher struct {
	js     jetstream.JetStream
	attest *attest.Key
}

// NewPublisher publishes through js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// WithAttestation returns a publisher that attests every message with k:
// for proofline's own ingest, which publishes only records it validated
// and canonicalized, so the signer need not check them again (package
// attest). Other producers publish unattested and are checked in full.
func (p *Publisher) WithAttestation(k *attest.Key) *Publisher {
	return &Publisher{js: p.js, attest: k}
}

// Connected reports whether the NATS connection is up. A producer that
// must not wait (the MCP hook's outbox) spools at once while it is down,
// instead of first waiting out a publish that cannot succeed.
func (p *Publisher) Connected() bool { return p.js.Conn().IsConnected() }

// Publish stores msgs in JetStream and returns only when the stream has
// acknowledged every one of them (or ctx ends).
//
// Two or more records travel in envelopes (envelope.go): as few messages
// as the server's max payload allows, each acknowledged as a whole, so
// every record of one envelope gets its sequence and duplicate flag. An
// envelope's Nats-Msg-Id is a digest of its body (attestEnvelope,
// envelopeID): the same batch published again (a retry) is reported as a
// duplicate and not stored twice. A lone
// record is published as a message of its own, its Nats-Msg-Id its record
// id and a digest of its bytes (MsgID), so a different record under the
// same id is not mistaken for a duplicate either way.
//
// Messages are published asynchronously and awaited together: a batch
// costs about one round trip, not one per message.
func (p *Publisher) Publish(ctx context.Context, msgs []Message) ([]PubResult, error) {
	type sent struct {
		first, n int
		f        jetstream.PubAckFuture
	}
	var futures []sent
	publish := func(nm *nats.Msg, first, n int) error {
		f, err := p.js.PublishMsgAsync(nm, jetstream.WithExpectStream(Stream))
		if err != nil {
			return fmt.Errorf("publish %s: %w", describe(msgs, first, n), classify(err))
		}
		futures = append(futures, sent{first: first, n: n, f: f})
		return nil
	}
	if len(msgs) == 1 {
		m := msgs[0]
		nm := &nats.Msg{Subject: Subject, Data: m.Data, Header: nats.Header{}}
		nm.Header.Set(jetstream.MsgIDHeader, MsgID(m.RecordID, m.Data))
		if p.attest != nil {
			nm.Header.Set(attest.Header, p.attest.Sign(m.RecordID, m.Data))
		}
		if err := publish(nm, 0, 1); err != nil {
			return nil, err
		}
	} else {
		maxPayload := int(p.js.Conn().MaxPayload())
		if maxPayload <= headerOverhead { // not connected yet: NATS's default
			maxPayload = 1 << 20
		}
		maxBody := maxPayload - headerOverhead
		for _, e := range split(msgs, maxBody) {
			nm := &nats.Msg{Subject: Subject, Data: e.body, Header: nats.Header{}}
			if p.attest != nil {
				id, att := attestEnvelope(p.attest, e.body)
				nm.Header.Set(jetstream.MsgIDHeader, id)
				nm.Header.Set(attest.Header, att)
			} else {
				nm.Header.Set(jetstream.MsgIDHeader, envelopeID(e.body))
			}
			nm.Header.Set(HeaderEnvelope, EnvelopeV1)
			nm.Header.Set(HeaderRecords, strconv.Itoa(e.n))
			if err := publish(nm, e.first, e.n); err != nil {
				return nil, err
			}
		}
	}
	out := make([]PubResult, len(msgs))
	for _, s := range futures {
		var r PubResult
		select {
		case ack := <-s.f.Ok():
			r = PubResult{Seq: ack.Sequence, Duplicate: ack.Duplicate}
		case err := <-s.f.Err():
			return nil, fmt.Errorf("publish %s: %w", describe(msgs, s.first, s.n), classify(err))
		case <-ctx.Done():
			return nil, fmt.Errorf("publish %s: waiting for JetStream: %w", describe(msgs, s.first, s.n), errors.Join(ErrUnavailable, ctx.Err()))
		}
		for i := s.first; i < s.first+s.n; i++ {
			out[i] = r
		}
	}
	return out, nil
}

// describe names the records of one message for an error.
func describe(msgs []Message, first, n int) string {
	if n == 1 {
		return msgs[first].RecordID
	}
	return fmt.Sprintf("envelope of %d records (%s…)", n, msgs[first].RecordID)
}

// Pending is how many of this client's async publishes await their
// acknowledgement (all requests together). Each frees its slot when it is
// answered or when the client's publish ack timeout (bus
// PublishAckTimeout) gives it up; a count that stays near the client's
// maximum means JetStream is not answering and new publishes will stall.
func (p *Publisher) Pending() int { return p.js.PublishAsyncPending() }

// classify marks the errors that only mean "JetStream did not answer in
// time" as ErrUnavailable, so callers retry them (503) rather than treat
// the records as bad.
func classify(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected):
		return errors.Join(ErrUnavailable, err)
	}
	return err
}

// ErrUnavailable means JetStream did not confirm storage in time; nothing
// in the batch may be assumed stored, and retrying it is safe.
var ErrUnavailable = errors.New("jetstream unavailable")

// MsgID is a record's Nats-Msg-Id: its record id, "/", and the first 16
// bytes of the SHA-256 of its canonical bytes, in hex. JetStream drops a
// message whose id it has seen within its duplicate window; keyed by the
// record id alone, someone else's record under a taken id was dropped as
// a "duplicate" and its sender told it was stored. With the digest only
// the same bytes again (a retry) are dropped; a different record reaches
// the signer, which refuses it as a conflict. "/" never occurs in a
// record id, so RecordIDOf can take the id back out.
func MsgID(recordID string, data []byte) string {
	sum := sha256.Sum256(data)
	return recordID + "/" + hex.EncodeToString(sum[:16])
}

// RecordIDOf is the record id in a Nats-Msg-Id made by MsgID; an id made
// before digests were added (the record id alone) is returned whole.
func RecordIDOf(msgID string) string {
	if i := strings.LastIndexByte(msgID, '/'); i >= 0 {
		return msgID[:i]
	}
	return msgID
}
