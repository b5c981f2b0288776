package publish

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/internal/attest"
)

// Envelopes: many call records in one JetStream message.
//
// Each record its own message cost the server a store, a delivery and an
// ack per record: about a third of its CPU under load (bench/RESULTS.md,
// issue 15). A producer's batch now travels as one message (or a few,
// bounded by the server's max payload), and the signer appends and acks
// per message. Deduplication is unchanged in strength: the log's record
// index is the permanent key per record, and an envelope's Nats-Msg-Id is
// a digest of its whole body (keyed, when attested), so only the very
// same envelope again (a retried publish) is dropped by JetStream.
//
// The body is one line per record, "<record_id> <record>\n". A record id
// matches ^[A-Za-z0-9._:-]{1,128}$ (schemas/callrecord.v1.json) and a
// record in RFC 8785 canonical form holds no raw control character, so
// neither a space in the id nor a newline in the record can occur; a
// format of our own because the signer, for an attested envelope, must
// find each record's id and bytes without decoding JSON (the cost the
// attestation exists to save). Carrying the id beside the record also
// lets the signer check, for an unattested envelope, that the two agree,
// as it checks the Nats-Msg-Id of a single-record message.
const (
	// HeaderEnvelope marks a message as an envelope and names its format
	// version. A message without it holds one record (as every message did
	// before envelopes; the signer reads both).
	HeaderEnvelope = "Proofline-Envelope"
	// HeaderRecords is the number of records in an envelope. The signer
	// sizes its batches by it before reading the body, and refuses an
	// envelope whose body holds another number.
	HeaderRecords = "Proofline-Records"
	// EnvelopeV1 is the only envelope format.
	EnvelopeV1 = "1"
	// envelopeIDPrefix starts an envelope's Nats-Msg-Id. "/" never occurs
	// in a record id, so it cannot be mistaken for a single record's id.
	envelopeIDPrefix = "envelope/"
	// headerOverhead is what an envelope's headers (message id, record
	// count, attestation) may take of the server's max payload, with room.
	headerOverhead = 512
)

// envelopeID is an envelope's Nats-Msg-Id: a prefix and the first 16
// bytes of the SHA-256 of its body, in hex.
func envelopeID(body []byte) string {
	sum := sha256.Sum256(body)
	return envelopeIDPrefix + hex.EncodeToString(sum[:16])
}

// attestEnvelope attests an envelope's body and names the envelope by
// the attestation: the HMAC of the body under the id "envelope/" (which
// no record id can be) also makes its Nats-Msg-Id, so ingest hashes each
// body once instead of twice (a SHA-256 for envelopeID, then the HMAC:
// the second pass was 2.3% of the server's CPU at 40k records/s). The
// same body under the same key gets the same id, so a retried publish is
// still a JetStream duplicate. Without the key, envelopeID names it.
func attestEnvelope(k *attest.Key, body []byte) (id, att string) {
	att, sum := k.SignSum(envelopeIDPrefix, body)
	return envelopeIDPrefix + hex.EncodeToString(sum[:16]), att
}

// VerifyEnvelope reports whether att is k's attestation of an envelope
// with this Nats-Msg-Id and body, in the form attestEnvelope makes or in
// the one of earlier versions (the attestation of the id and body, the id
// made by envelopeID), which a stream may still hold after an upgrade.
// The id tells the forms apart: only the first is the attestation's own
// first 16 bytes.
func VerifyEnvelope(k *attest.Key, id, att string, body []byte) bool {
	if sum, err := attest.Sum(att); err == nil && len(sum) >= 16 && id == envelopeIDPrefix+hex.EncodeToString(sum[:16]) {
		return k.Verify(envelopeIDPrefix, body, att)
	}
	return k.Verify(id, body, att)
}

// envelope is one message's worth of records.
type envelope struct {
	// first and n are the range of the publisher's input in it.
	first, n int
	body     []byte
}

// split packs msgs, in order, into envelopes whose bodies stay within
// maxBody bytes. A record too large to share an envelope gets one of its
// own (and fails at the server like a lone record would, if too large for
// any message).
func split(msgs []Message, maxBody int) []envelope {
	var out []envelope
	var cur *envelope
	for i, m := range msgs {
		line := len(m.RecordID) + 1 + len(m.Data) + 1
		if cur == nil || len(cur.body)+line > maxBody {
			out = append(out, envelope{first: i, body: make([]byte, 0, min(maxBody, restSize(msgs[i:])))})
			cur = &out[len(out)-1]
		}
		cur.body = appendLine(cur.body, m)
		cur.n++
	}
	return out
}

// restSize is the body size msgs would take in one envelope.
func restSize(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += len(m.RecordID) + len(m.Data) + 2
	}
	return n
}

func appendLine(b []byte, m Message) []byte {
	b = append(b, m.RecordID...)
	b = append(b, ' ')
	b = append(b, m.Data...)
	return append(b, '\n')
}

// ErrEnvelope means an envelope's body is not in the envelope format; it
// can never be read, whatever the retries.
var ErrEnvelope = errors.New("malformed envelope")

// IsEnvelope reports whether a message with these headers is an envelope
// (of any version; ReadEnvelope refuses the ones it does not know).
func IsEnvelope(version string) bool { return version != "" }

// EnvelopeRecords is the record count an envelope's headers announce, or
// 1 for a message that is not an envelope (or announces no valid count).
func EnvelopeRecords(version, records string) int {
	if !IsEnvelope(version) {
		return 1
	}
	n, err := strconv.Atoi(records)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// ReadEnvelope splits an envelope's body into its records. The returned
// messages' slices alias body. It checks the format (version, one id and
// one record per line, as many lines as announced), not the records
// themselves: that is the reader's job.
func ReadEnvelope(version, records string, body []byte) ([]Message, error) {
	if version != EnvelopeV1 {
		return nil, fmt.Errorf("%w: version %q, this reader knows %q", ErrEnvelope, version, EnvelopeV1)
	}
	want, err := strconv.Atoi(records)
	if err != nil || want < 1 {
		return nil, fmt.Errorf("%w: %s %q is not a positive count", ErrEnvelope, HeaderRecords, records)
	}
	out := make([]Message, 0, want)
	for len(body) > 0 {
		nl := bytes.IndexByte(body, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("%w: record %d has no end of line", ErrEnvelope, len(out))
		}
		line := body[:nl]
		body = body[nl+1:]
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 || sp == len(line)-1 {
			return nil, fmt.Errorf("%w: line %d is not \"<record_id> <record>\"", ErrEnvelope, len(out)+1)
		}
		if len(out) == want {
			return nil, fmt.Errorf("%w: more records than the %d announced", ErrEnvelope, want)
		}
		out = append(out, Message{RecordID: string(line[:sp]), Data: line[sp+1:]})
	}
	if len(out) != want {
		return nil, fmt.Errorf("%w: %d records, %d announced", ErrEnvelope, len(out), want)
	}
	return out, nil
}

// Records is what one message of the CALLS stream carries: the records
// of an envelope, or the one record of any other message (its id taken
// from its Nats-Msg-Id). It is for readers that audit the stream itself
// (tests, tools); the signer reads envelopes with ReadEnvelope, since it
// also decides what to trust.
func Records(h nats.Header, data []byte) ([]Message, error) {
	if version := h.Get(HeaderEnvelope); IsEnvelope(version) {
		return ReadEnvelope(version, h.Get(HeaderRecords), data)
	}
	return []Message{{RecordID: RecordIDOf(h.Get(jetstream.MsgIDHeader)), Data: data}}, nil
}
