package notesig

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"fmt"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/mod/sumdb/note"
)

// signer adapts a sigstore signature.Signer to note.Signer.
type signer struct {
	origin string
	hash   uint32
	pub    ed25519.PublicKey
	s      signature.Signer
}

// NewSigner makes a note.Signer that signs checkpoints of the log origin
// with s, any sigstore signer: a file key, or a KMS signer from sigstore's
// kms packages. pub is s's public key; when nil it is asked of s (for a KMS
// signer that is a network call, hence the option to pass it).
//
// The key must be Ed25519, because signed-note verifiers know no other
// type: KMS keys used for checkpoints must be created as Ed25519 keys.
// Other key types fail with ErrUnsupportedKey.
func NewSigner(origin string, s signature.Signer, pub crypto.PublicKey) (note.Signer, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("checkpoint signer for %s: no sigstore signer", origin)
	}
	if pub == nil {
		var err error
		if pub, err = s.PublicKey(); err != nil {
			return nil, fmt.Errorf("checkpoint signer for %s: public key: %w", origin, err)
		}
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok || len(edPub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("checkpoint signer for %s: %w, got %T", origin, ErrUnsupportedKey, pub)
	}
	return &signer{origin: origin, hash: keyHash(origin, encodeKey(edPub)), pub: edPub, s: s}, nil
}

// Name is the log origin: signed notes name their signers.
func (s *signer) Name() string { return s.origin }

// KeyHash is the C2SP key ID verifiers select the key by.
func (s *signer) KeyHash() uint32 { return s.hash }

// Sign signs the note text with pure Ed25519 (no pre-hash), which is what
// signed-note verifiers check.
//
// Each signature is verified before it is returned. Signing a checkpoint
// is rare (at most a few times a second), verifying costs microseconds,
// and it turns a misconfigured signer — a KMS key other than pub, or a
// sigstore Ed25519ph signer — into a failed publication instead of
// checkpoints that no auditor can verify.
func (s *signer) Sign(msg []byte) ([]byte, error) {
	sig, err := s.s.SignMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, fmt.Errorf("sign checkpoint: the signer's %d-byte signature does not verify as pure Ed25519 with key %08x (wrong key, or a pre-hashed Ed25519ph signer?)", len(sig), s.hash)
	}
	return sig, nil
}

// LoadSigner loads the log's private key from a PEM file (PKCS#8, as
// Keygen writes it; unencrypted) through sigstore, and returns the
// checkpoint signer for origin with its verifier key.
func LoadSigner(origin string, privPEMPath string) (note.Signer, string, error) {
	// The hash only matters for ECDSA and RSA keys, which NewSigner then
	// rejects with a clear error; Ed25519 signs the message itself.
	s, err := signature.LoadSignerFromPEMFile(privPEMPath, crypto.SHA256, cryptoutils.SkipPassword)
	if err != nil {
		return nil, "", fmt.Errorf("log key %s: %w", privPEMPath, err)
	}
	ns, err := NewSigner(origin, s, nil)
	if err != nil {
		return nil, "", fmt.Errorf("log key %s: %w", privPEMPath, err)
	}
	return ns, VerifierKey(origin, ns.(*signer).pub), nil
}
