// Package notesig signs the log's checkpoints as C2SP signed notes through
// sigstore's signature.Signer interface.
//
// Going through sigstore rather than holding an ed25519.PrivateKey means
// the key can live anywhere sigstore can sign with: a PEM file today
// (LoadSigner), a KMS key in production (any signature.Signer with an
// Ed25519 public key passed to NewSigner), without the log changing.
package notesig

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/mod/sumdb/note"
)

// algEd25519 is the C2SP signed-note signature type of Ed25519 keys.
const algEd25519 = 0x01

// ErrUnsupportedKey is returned for keys signed notes cannot carry: the
// standard note verifiers (Go's sumdb/note, C2SP) know Ed25519 only, so
// KMS keys used for checkpoints must be Ed25519 keys.
var ErrUnsupportedKey = errors.New("signed-note checkpoints need an Ed25519 key")

// Keygen makes a new Ed25519 key pair for a log with the given origin. It
// returns the private key as PKCS#8 PEM and the public key as a signed-note
// verifier key ("origin+hash+base64"), the form auditors are given.
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

// VerifierKey is the signed-note verifier key of an Ed25519 public key.
func VerifierKey(origin string, pub ed25519.PublicKey) string {
	keyBytes := append([]byte{algEd25519}, pub...)
	return fmt.Sprintf("%s+%08x+%s", origin, keyHash(origin, keyBytes), base64.StdEncoding.EncodeToString(keyBytes))
}

// keyHash is the C2SP signed-note key id: the first four bytes of
// SHA-256(origin || "\n" || alg || key).
func keyHash(origin string, keyBytes []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(origin + "\n"))
	h.Write(keyBytes)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func checkOrigin(origin string) error {
	if origin == "" || strings.ContainsAny(origin, "+ \t\n") {
		return fmt.Errorf("origin %q: must be non-empty without '+' or spaces", origin)
	}
	return nil
}

// signer adapts a sigstore signature.Signer to note.Signer.
type signer struct {
	origin string
	hash   uint32
	s      signature.Signer
}

// NewSigner makes a note.Signer for origin from any sigstore signer whose
// public key is pub (an Ed25519 key).
func NewSigner(origin string, s signature.Signer, pub crypto.PublicKey) (note.Signer, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, err
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w, got %T", ErrUnsupportedKey, pub)
	}
	return &signer{origin: origin, hash: keyHash(origin, append([]byte{algEd25519}, edPub...)), s: s}, nil
}

func (s *signer) Name() string    { return s.origin }
func (s *signer) KeyHash() uint32 { return s.hash }

// Sign signs the note text. Ed25519 signs the message itself (no
// pre-hash), which is what signed-note verifiers check.
func (s *signer) Sign(msg []byte) ([]byte, error) {
	sig, err := s.s.SignMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return sig, nil
}

// LoadSigner loads an Ed25519 private key (PKCS#8 PEM, as Keygen writes)
// and returns a checkpoint signer for origin with its verifier key.
func LoadSigner(origin, privPEMPath string) (note.Signer, string, error) {
	raw, err := os.ReadFile(privPEMPath)
	if err != nil {
		return nil, "", fmt.Errorf("read log key: %w", err)
	}
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(raw, cryptoutils.SkipPassword)
	if err != nil {
		return nil, "", fmt.Errorf("log key %s: %w", privPEMPath, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, "", fmt.Errorf("log key %s: %w, got %T", privPEMPath, ErrUnsupportedKey, k)
	}
	sv, err := signature.LoadED25519SignerVerifier(priv)
	if err != nil {
		return nil, "", fmt.Errorf("log key %s: %w", privPEMPath, err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	s, err := NewSigner(origin, sv, pub)
	if err != nil {
		return nil, "", err
	}
	return s, VerifierKey(origin, pub), nil
}

// LoadVerifier reads a file holding a signed-note verifier key.
func LoadVerifier(path string) (note.Verifier, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read verifier key: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("verifier key %s: %w", path, err)
	}
	return v, nil
}
