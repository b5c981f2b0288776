// Package notesig signs the log's checkpoints as C2SP signed notes
// (https://c2sp.org/signed-note) through sigstore's signature.Signer
// interface, and loads the verifier keys auditors check them with.
//
// Going through sigstore rather than holding an ed25519.PrivateKey means
// the key can live anywhere sigstore can sign with: a PEM file today
// (LoadSigner), a KMS key in production (any signature.Signer with an
// Ed25519 public key, passed to NewSigner), without the log changing.
package notesig

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// algEd25519 is the C2SP signed-note signature type of Ed25519 keys.
const algEd25519 = 0x01

// ErrUnsupportedKey is returned for keys signed notes cannot carry. The
// standard note verifiers (Go's sumdb/note, the C2SP spec, witnesses) know
// Ed25519 only, so a KMS key used for checkpoints must be an Ed25519 key.
var ErrUnsupportedKey = errors.New("signed-note checkpoints need an Ed25519 key (KMS keys too)")

// Keygen makes a new Ed25519 key pair for the log with the given origin.
// It returns the private key as PKCS#8 PEM and the public key as a
// signed-note verifier key ("origin+keyhash+base64"), the form auditors
// are given.
func Keygen(origin string) (privPEM []byte, verifierKey string, err error) {
	if err := checkOrigin(origin); err != nil {
		return nil, "", err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate key: %w", err)
	}
	privPEM, err = cryptoutils.MarshalPrivateKeyToPEM(priv)
	if err != nil {
		return nil, "", fmt.Errorf("encode private key: %w", err)
	}
	return privPEM, VerifierKey(origin, pub), nil
}

// VerifierKey is the signed-note verifier key of an Ed25519 public key:
// origin+<key hash, 8 hex digits>+base64(0x01 || pub).
func VerifierKey(origin string, pub ed25519.PublicKey) string {
	key := encodeKey(pub)
	return fmt.Sprintf("%s+%08x+%s", origin, keyHash(origin, key), base64.StdEncoding.EncodeToString(key))
}

// encodeKey is the signed-note encoding of an Ed25519 public key: the
// signature type byte, then the key.
func encodeKey(pub ed25519.PublicKey) []byte {
	return append([]byte{algEd25519}, pub...)
}

// keyHash is the C2SP signed-note key ID: the first four bytes, big
// endian, of SHA-256(origin || "\n" || encoded key). Verifiers pick the
// key by (origin, key hash), so it must match theirs bit for bit.
func keyHash(origin string, encodedKey []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(origin + "\n"))
	h.Write(encodedKey)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// checkOrigin applies the signed-note rules for key names, so that a bad
// origin fails at key generation rather than when an auditor parses the
// key.
func checkOrigin(origin string) error {
	if origin == "" || !utf8.ValidString(origin) || strings.Contains(origin, "+") || strings.IndexFunc(origin, unicode.IsSpace) >= 0 {
		return fmt.Errorf("origin %q: must be non-empty UTF-8 without '+' or spaces", origin)
	}
	return nil
}
