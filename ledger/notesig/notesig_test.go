package notesig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/mod/sumdb/note"
)

const origin = "example.com/proofline/test"

func TestKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	priv, vkey, err := Keygen(origin)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "log.key")
	if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "log.pub"), []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, gotVKey, err := LoadSigner(origin, keyPath)
	if err != nil || gotVKey != vkey {
		t.Fatalf("LoadSigner: %v, vkey %q want %q", err, gotVKey, vkey)
	}
	msg, err := note.Sign(&note.Note{Text: origin + "\n42\nAAAA\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(filepath.Join(dir, "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatalf("own signature does not verify: %v", err)
	}
	// Another key with the same origin must not verify.
	_, otherVKey, _ := Keygen(origin)
	ov, _ := note.NewVerifier(otherVKey)
	if _, err := note.Open(msg, note.VerifierList(ov)); err == nil {
		t.Fatal("a different key verified the signature")
	}
	// Altered text must not verify.
	msg[len(origin)+2] ^= 1
	if _, err := note.Open(msg, note.VerifierList(v)); err == nil {
		t.Fatal("altered note verified")
	}
}

// TestMatchesSumdbNote checks the adapter against Go's own signed-note
// implementation on the same key: same key hash, and each verifies the
// other's signatures.
func TestMatchesSumdbNote(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyBytes := append([]byte{algEd25519}, priv.Seed()...)
	skey := "PRIVATE+KEY+" + origin + "+" + hex8(keyHash(origin, append([]byte{algEd25519}, pub...))) + "+" + base64.StdEncoding.EncodeToString(keyBytes)
	goSigner, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadED25519SignerVerifier(priv)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := NewSigner(origin, sv, pub)
	if err != nil {
		t.Fatal(err)
	}
	if ours.KeyHash() != goSigner.KeyHash() || ours.Name() != goSigner.Name() {
		t.Fatalf("key hash %08x/%s, sumdb/note %08x/%s", ours.KeyHash(), ours.Name(), goSigner.KeyHash(), goSigner.Name())
	}
	goVerifier, err := note.NewVerifier(VerifierKey(origin, pub))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]note.Signer{"ours": ours, "sumdb": goSigner} {
		msg, err := note.Sign(&note.Note{Text: "hello\n"}, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(msg, note.VerifierList(goVerifier)); err != nil {
			t.Fatalf("%s signature: %v", name, err)
		}
	}
}

func hex8(h uint32) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = digits[h&0xf]
		h >>= 4
	}
	return string(b)
}

func TestRejectsNonEd25519(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err == nil {
		_, err = NewSigner(origin, sv, k.Public())
	}
	if !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("ECDSA key: %v, want ErrUnsupportedKey", err)
	}
	if _, _, err := Keygen("bad origin+x"); err == nil {
		t.Fatal("origin with '+' accepted")
	}
	if _, err := LoadVerifier(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing verifier file accepted")
	}
}
