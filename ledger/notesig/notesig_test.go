package notesig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/mod/sumdb/note"
)

const origin = "example.com/proofline/test"

const checkpointText = origin + "\n42\nqSU1PHgYxHhfzTPYCqy8wD/tj3Kgwd2PD3m3QNnCOqM=\n"

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeygenLoadSignVerify(t *testing.T) {
	privPEM, vkey, err := Keygen(origin)
	if err != nil {
		t.Fatal(err)
	}
	// The verifier key is exactly what Go's signed-note package derives
	// from the same public key.
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(privPEM, cryptoutils.SkipPassword)
	if err != nil {
		t.Fatalf("Keygen's PEM does not parse: %v", err)
	}
	want, err := note.NewEd25519VerifierKey(origin, k.(ed25519.PrivateKey).Public().(ed25519.PublicKey))
	if err != nil || vkey != want {
		t.Fatalf("verifier key %q, sumdb/note says %q (%v)", vkey, want, err)
	}

	s, gotVKey, err := LoadSigner(origin, writeFile(t, "log.key", privPEM))
	if err != nil || gotVKey != vkey {
		t.Fatalf("LoadSigner: %v, verifier key %q want %q", err, gotVKey, vkey)
	}
	msg, err := note.Sign(&note.Note{Text: checkpointText}, s)
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(writeFile(t, "log.pub", []byte("\n  "+vkey+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil || n.Text != checkpointText {
		t.Fatalf("own signature: %v", err)
	}
}

// TestMatchesSumdbNote checks the adapter against Go's own signed-note
// signer on the same key, encoded the way note.GenerateKey encodes it:
// same name and key hash, and each verifies the other's signatures.
func TestMatchesSumdbNote(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	goVKey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	// PRIVATE+KEY+<name>+<hash>+base64(0x01 || seed), hash as in the vkey.
	hash := strings.Split(goVKey, "+")[1]
	skey := "PRIVATE+KEY+" + origin + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, priv.Seed()...))
	goSigner, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	goVerifier, err := note.NewVerifier(goVKey)
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
	oursVerifier, err := note.NewVerifier(VerifierKey(origin, pub))
	if err != nil {
		t.Fatal(err)
	}
	if ours.KeyHash() != goSigner.KeyHash() || ours.Name() != goSigner.Name() {
		t.Fatalf("adapter %s/%08x, sumdb/note %s/%08x", ours.Name(), ours.KeyHash(), goSigner.Name(), goSigner.KeyHash())
	}

	oursMsg, err := note.Sign(&note.Note{Text: checkpointText}, ours)
	if err != nil {
		t.Fatal(err)
	}
	goMsg, err := note.Sign(&note.Note{Text: checkpointText}, goSigner)
	if err != nil {
		t.Fatal(err)
	}
	// Ed25519 is deterministic: same key and text, same note.
	if !bytes.Equal(oursMsg, goMsg) {
		t.Errorf("notes differ:\n%s\n%s", oursMsg, goMsg)
	}
	if _, err := note.Open(oursMsg, note.VerifierList(goVerifier)); err != nil {
		t.Errorf("sumdb/note verifier rejects the adapter's note: %v", err)
	}
	if _, err := note.Open(goMsg, note.VerifierList(oursVerifier)); err != nil {
		t.Errorf("VerifierKey's verifier rejects sumdb/note's note: %v", err)
	}
}

func TestWrongKeyOrTextFails(t *testing.T) {
	privPEM, _, err := Keygen(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := LoadSigner(origin, writeFile(t, "log.key", privPEM))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: checkpointText}, s)
	if err != nil {
		t.Fatal(err)
	}
	_, otherVKey, err := Keygen(origin)
	if err != nil {
		t.Fatal(err)
	}
	other, err := note.NewVerifier(otherVKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(other)); err == nil {
		t.Error("another key with the same origin verified the note")
	}
	own, err := note.NewVerifier(VerifierKey(origin, mustPub(t, privPEM)))
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(msg, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := note.Open(altered, note.VerifierList(own)); err == nil {
		t.Error("altered text verified")
	}
}

func mustPub(t *testing.T, privPEM []byte) ed25519.PublicKey {
	t.Helper()
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(privPEM, cryptoutils.SkipPassword)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey).Public().(ed25519.PublicKey)
}

func TestRejectsNonEd25519(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecSigner, err := signature.LoadECDSASignerVerifier(ec, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, err := signature.LoadRSAPKCS1v15SignerVerifier(rk, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		s   signature.Signer
		pub crypto.PublicKey
	}{
		"ECDSA P-256":            {ecSigner, ec.Public()},
		"ECDSA, key from signer": {ecSigner, nil},
		"RSA":                    {rsaSigner, rk.Public()},
	} {
		_, err := NewSigner(origin, c.s, c.pub)
		if !errors.Is(err, ErrUnsupportedKey) || !strings.Contains(err.Error(), "Ed25519") {
			t.Errorf("%s: %v, want ErrUnsupportedKey naming Ed25519", name, err)
		}
	}

	ecPEM, err := cryptoutils.MarshalPrivateKeyToPEM(ec)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadSigner(origin, writeFile(t, "ec.key", ecPEM)); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("ECDSA PEM file: %v, want ErrUnsupportedKey", err)
	}
}

// TestSignChecksItsSignature covers the signers NewSigner cannot judge
// from the key type alone: they must fail to sign, not publish
// checkpoints nobody can verify.
func TestSignChecksItsSignature(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ph, err := signature.LoadED25519phSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	pure, err := signature.LoadED25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		s   signature.Signer
		pub crypto.PublicKey
	}{
		"Ed25519ph signer": {ph, pub},
		"another key":      {pure, otherPub},
	} {
		s, err := NewSigner(origin, c.s, c.pub)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := note.Sign(&note.Note{Text: checkpointText}, s); err == nil {
			t.Errorf("%s: signed a note its key does not verify", name)
		}
	}
}

func TestBadInputs(t *testing.T) {
	for _, o := range []string{"", "bad origin", "a+b", "tab\there"} {
		if _, _, err := Keygen(o); err == nil {
			t.Errorf("Keygen(%q) accepted", o)
		}
	}
	privPEM, vkey, err := Keygen(origin)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadSigner(origin, filepath.Join(t.TempDir(), "missing.key")); err == nil {
		t.Error("LoadSigner: missing file accepted")
	}
	if _, _, err := LoadSigner(origin, writeFile(t, "junk.key", []byte("junk"))); err == nil {
		t.Error("LoadSigner: junk accepted")
	}
	skey, _, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"empty":           "",
		"junk":            "not a key\n",
		"wrong key hash":  origin + "+00000000+" + strings.SplitN(vkey, "+", 3)[2],
		"PEM private key": string(privPEM),
		"note skey":       skey,
	} {
		if _, err := LoadVerifier(writeFile(t, "v.pub", []byte(content))); err == nil {
			t.Errorf("LoadVerifier(%s) accepted", name)
		} else if !strings.Contains(err.Error(), "v.pub") {
			t.Errorf("LoadVerifier(%s): %v does not name the file", name, err)
		}
	}
	if _, err := LoadVerifier(filepath.Join(t.TempDir(), "missing.pub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadVerifier(missing): %v, want os.ErrNotExist", err)
	}
}
