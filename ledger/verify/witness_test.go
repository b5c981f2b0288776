package verify

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	f_note "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// cosigner is a witness key made with the transparency-dev formats
// library, so the hand-written cosignature/v1 verifier is checked against
// another implementation's signatures.
type cosigner struct {
	name string
	vkey string
	s    note.Signer
}

func newCosigner(t *testing.T, name string) cosigner {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f_note.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	cv, err := f_note.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return cosigner{name: name, vkey: cv, s: s}
}

func TestCheckWitnesses(t *testing.T) {
	logSkey, _, err := note.GenerateKey(rand.Reader, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	logSigner, _ := note.NewSigner(logSkey)
	a, b, c := newCosigner(t, "a.example"), newCosigner(t, "b.example"), newCosigner(t, "c.example")
	policy := fmt.Sprintf("log somekey\n# comment\nwitness wa %s https://a.example\nwitness wb %s\nwitness wc %s https://c.example\ngroup g 2 wa wb wc\nquorum g\n", a.vkey, b.vkey, c.vkey)
	p, err := ParsePolicy([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	text := "example.com/log\n3\nq5jtHjPdO8J3qA2fvYQeOsTWKGoA6v/Jv0wuR8flf1U=\n"
	sign := func(signers ...note.Signer) []byte {
		raw, err := note.Sign(&note.Note{Text: text}, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	// Flip a bit inside b's signature bytes (decoded, so the line stays
	// valid base64: flipping a bit of the base64 text itself can make the
	// whole note unparseable, which depended on the random signature).
	tampered := sign(logSigner, a.s, b.s)
	i := strings.LastIndex(string(tampered), "— b.example ")
	start := i + len("— b.example ")
	end := start + strings.IndexByte(string(tampered[start:]), '\n')
	sigBytes, err := base64.StdEncoding.DecodeString(string(tampered[start:end]))
	if err != nil {
		t.Fatal(err)
	}
	sigBytes[len(sigBytes)-10] ^= 1
	tampered = append(append(append([]byte{}, tampered[:start]...), base64.StdEncoding.EncodeToString(sigBytes)...), tampered[end:]...)

	for _, tc := range []struct {
		name      string
		note      []byte
		cosigners string
		ok        bool
	}{
		{"two of three", sign(logSigner, a.s, c.s), "wa,wc", true},
		{"all three", sign(logSigner, a.s, b.s, c.s), "wa,wb,wc", true},
		{"one", sign(logSigner, b.s), "wb", false},
		{"none", sign(logSigner), "", false},
		{"a tampered cosignature counts as none", tampered, "wa", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := CheckWitnesses(tc.note, p)
			if got := strings.Join(res.Cosigners, ","); got != tc.cosigners {
				t.Errorf("cosigners %q, want %q", got, tc.cosigners)
			}
			var mm *MismatchError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case !tc.ok && (!errors.As(err, &mm) || mm.Kind != KindWitness):
				t.Fatalf("got %v, want a witness mismatch", err)
			}
		})
	}
}

func TestParsePolicyRejects(t *testing.T) {
	a := newCosigner(t, "a.example")
	for _, tc := range []struct{ name, policy, want string }{
		{"no quorum", "witness wa " + a.vkey + "\n", "no quorum"},
		{"unknown quorum", "witness wa " + a.vkey + "\nquorum g\n", "not defined"},
		{"unknown member", "witness wa " + a.vkey + "\ngroup g 1 wa wb\nquorum g\n", "unknown member"},
		{"threshold too high", "witness wa " + a.vkey + "\ngroup g 2 wa\nquorum g\n", "threshold"},
		{"bad key", "witness wa nope+0000+AAAA\nquorum wa\n", "wa"},
		{"same key twice", "witness wa " + a.vkey + "\nwitness wb " + a.vkey + "\nquorum wa\n", "has the key of"},
		{"keyword as name", "witness quorum " + a.vkey + "\nquorum quorum\n", "keyword"},
		{"unknown keyword", "witnesses wa " + a.vkey + "\n", "unknown keyword"},
		{"bad URL", "witness wa " + a.vkey + " ftp://x\nquorum wa\n", "URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.policy))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
