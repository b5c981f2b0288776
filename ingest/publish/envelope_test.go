package publish

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/proofline/proofline/internal/attest"
)

func records(n, size int) []Message {
	out := make([]Message, n)
	for i := range out {
		id := fmt.Sprintf("rec-%04d", i)
		out[i] = Message{RecordID: id, Data: []byte(`{"record_id":"` + id + `","x":"` + string(bytes.Repeat([]byte("a"), size)) + `"}`)}
	}
	return out
}

// TestEnvelopeRoundTrip: whatever the bound, split keeps every record, in
// order, each envelope within the bound unless one record alone exceeds
// it, and ReadEnvelope gives back exactly what went in.
func TestEnvelopeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		msgs      []Message
		maxBody   int
		envelopes int
	}{
		{"all in one", records(50, 100), 1 << 20, 1},
		{"bounded", records(50, 100), 1200, 5},       // each line is 9+1+137+1 = 148 bytes: 8 per envelope
		{"one record each", records(5, 100), 150, 5}, // a line fits, two do not
		{"record larger than the bound", records(3, 300), 100, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			envs := split(tc.msgs, tc.maxBody)
			if len(envs) < tc.envelopes {
				t.Fatalf("%d envelopes, want at least %d", len(envs), tc.envelopes)
			}
			var got []Message
			for i, e := range envs {
				if e.n > 1 && len(e.body) > tc.maxBody {
					t.Errorf("envelope %d: %d bytes, bound %d", i, len(e.body), tc.maxBody)
				}
				if e.first != len(got) {
					t.Errorf("envelope %d starts at %d, want %d", i, e.first, len(got))
				}
				recs, err := ReadEnvelope(EnvelopeV1, strconv.Itoa(e.n), e.body)
				if err != nil {
					t.Fatalf("envelope %d: %v", i, err)
				}
				got = append(got, recs...)
			}
			if len(got) != len(tc.msgs) {
				t.Fatalf("%d records back, %d in", len(got), len(tc.msgs))
			}
			for i := range got {
				if got[i].RecordID != tc.msgs[i].RecordID || !bytes.Equal(got[i].Data, tc.msgs[i].Data) {
					t.Fatalf("record %d: %q %s, want %q %s", i, got[i].RecordID, got[i].Data, tc.msgs[i].RecordID, tc.msgs[i].Data)
				}
			}
		})
	}
}

// TestReadEnvelopeRefuses: a body not in the format is refused with
// ErrEnvelope (the signer dead-letters it whole), never read partly.
func TestReadEnvelopeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, version, count, body string
	}{
		{"unknown version", "2", "1", "a {}\n"},
		{"no count", "1", "", "a {}\n"},
		{"zero count", "1", "0", ""},
		{"fewer than announced", "1", "2", "a {}\n"},
		{"more than announced", "1", "1", "a {}\nb {}\n"},
		{"no end of line", "1", "1", "a {}"},
		{"no id", "1", "1", " {}\n"},
		{"no record", "1", "1", "a \n"},
		{"no separator", "1", "1", "a{}\n"},
		{"empty line", "1", "2", "a {}\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := ReadEnvelope(tc.version, tc.count, []byte(tc.body))
			if !errors.Is(err, ErrEnvelope) {
				t.Fatalf("got %d records, err %v; want ErrEnvelope", len(recs), err)
			}
		})
	}
}

// TestEnvelopeIDIsTheBody: the same batch again has the same id (a retry
// JetStream drops), any other batch another one.
func TestEnvelopeIDIsTheBody(t *testing.T) {
	a := split(records(10, 10), 1<<20)[0].body
	b := split(records(10, 10), 1<<20)[0].body
	c := split(records(9, 10), 1<<20)[0].body
	if envelopeID(a) != envelopeID(b) {
		t.Error("the same records made two envelope ids")
	}
	if envelopeID(a) == envelopeID(c) {
		t.Error("different records made one envelope id")
	}
}

// TestAttestedEnvelopeID: an attested envelope's id is as stable as an
// unattested one's (the same body under the same key, the same id) and
// differs by body and by key; VerifyEnvelope accepts it and the form of
// earlier versions, and nothing else.
func TestAttestedEnvelopeID(t *testing.T) {
	key, err := attest.New(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, err := attest.New(bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	a := split(records(10, 10), 1<<20)[0].body
	c := split(records(9, 10), 1<<20)[0].body
	idA, attA := attestEnvelope(key, a)
	if id, att := attestEnvelope(key, bytes.Clone(a)); id != idA || att != attA {
		t.Error("the same body made two attested envelopes")
	}
	idC, attC := attestEnvelope(key, c)
	if idC == idA {
		t.Error("different bodies made one envelope id")
	}
	if id, _ := attestEnvelope(other, a); id == idA {
		t.Error("two keys made one envelope id")
	}
	if len(idA) != len(envelopeID(a)) || !strings.HasPrefix(idA, envelopeIDPrefix) {
		t.Errorf("attested envelope id %q is not shaped as an unattested one, %q", idA, envelopeID(a))
	}
	earlierID := envelopeID(a)
	earlierAtt := key.Sign(earlierID, a)
	_, otherAtt := attestEnvelope(other, a)
	for _, c := range []struct {
		name     string
		id, att  string
		body     []byte
		verifies bool
	}{
		{"attested", idA, attA, a, true},
		{"earlier form", earlierID, earlierAtt, a, true},
		{"another body under the id", idA, attA, c, false},
		{"another envelope's attestation", idA, attC, a, false},
		{"another envelope's id and attestation", idC, attC, a, false},
		{"another key", idA, otherAtt, a, false},
		{"earlier form, another body", earlierID, earlierAtt, c, false},
		{"not base64", idA, "%%%", a, false},
		{"empty", idA, "", a, false},
	} {
		if got := VerifyEnvelope(key, c.id, c.att, c.body); got != c.verifies {
			t.Errorf("%s: VerifyEnvelope = %v, want %v", c.name, got, c.verifies)
		}
	}
}
