// Package attest lets proofline's own ingest vouch for the records it
// publishes, so that the signer need not check them again.
//
// The signer must only ever append a call record in RFC 8785 canonical
// form: the leaf is what auditors re-derive. Re-checking that — decoding
// the record and encoding it again — was about a sixth of the server's
// CPU under load, spent on records ingest had just validated and
// canonicalized itself. Ingest now sends an HMAC-SHA256 of the record id
// and bytes, keyed by a secret in the data directory, with each message;
// the signer accepts a message whose attestation verifies, and checks
// everything else in full (records from the MCP hook, the collector, or
// anyone else holding a NATS credential), so a producer without the key
// cannot get anything past the check.
package attest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
	"sync"
)

// Header carries the attestation on a JetStream message.
const Header = "Proofline-Attestation"

// keySize is the HMAC key's size in bytes.
const keySize = 32

// Key attests and verifies records. Safe for concurrent use.
type Key struct {
	secret []byte
	// macs holds keyed HMAC states for reuse: hmac.New hashes the key
	// into fresh inner and outer states, a cost each record paid twice
	// (ingest signs, the signer verifies).
	macs sync.Pool
}

// New makes a Key from a secret of at least 32 bytes.
func New(secret []byte) (*Key, error) {
	if len(secret) < keySize {
		return nil, fmt.Errorf("attestation key: %d bytes, want at least %d", len(secret), keySize)
	}
	k := &Key{secret: append([]byte(nil), secret...)}
	k.macs.New = func() any { return hmac.New(sha256.New, k.secret) }
	return k, nil
}

// LoadOrCreate reads the key file (hex), creating it with a new random
// key on first use. Ingest and signer processes that share the file
// trust each other's attestations; others fall back to full checks.
func LoadOrCreate(path string) (*Key, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		secret := make([]byte, keySize)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				// Another process made it first: use theirs.
				return LoadOrCreate(path)
			}
			return nil, fmt.Errorf("attestation key: %w", err)
		}
		_, werr := f.WriteString(hex.EncodeToString(secret) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("attestation key: %w", werr)
		}
		return New(secret)
	}
	if err != nil {
		return nil, fmt.Errorf("attestation key: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("attestation key %s: %w", path, err)
	}
	return New(secret)
}

// Sign attests that data is the canonical call record with this id.
func (k *Key) Sign(id string, data []byte) string {
	return base64.RawURLEncoding.EncodeToString(k.mac(id, data))
}

// SignSum is Sign, also returning the HMAC the attestation encodes, for a
// caller that names the message by it (an envelope's Nats-Msg-Id): one
// pass over the data instead of a second hash for the name.
func (k *Key) SignSum(id string, data []byte) (att string, sum []byte) {
	sum = k.mac(id, data)
	return base64.RawURLEncoding.EncodeToString(sum), sum
}

// Sum is the HMAC an attestation encodes; it checks nothing else.
func Sum(att string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(att)
}

// Verify reports whether att is this key's attestation of (id, data).
func (k *Key) Verify(id string, data []byte, att string) bool {
	got, err := base64.RawURLEncoding.DecodeString(att)
	return err == nil && hmac.Equal(got, k.mac(id, data))
}

func (k *Key) mac(id string, data []byte) []byte {
	h := k.macs.Get().(hash.Hash)
	defer k.macs.Put(h)
	h.Reset()
	h.Write([]byte(id))
	// The id cannot contain NUL (record ids are [A-Za-z0-9._:-]), so the
	// split between id and data is unambiguous.
	h.Write([]byte{0})
	h.Write(data)
	return h.Sum(nil)
}
