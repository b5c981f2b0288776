package verify_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/ledger/verify"
)

func TestVerifyBundle(t *testing.T) {
	tl := newTestLog(t)
	cpRaw := tl.add(t, 700)
	cp := tl.checkpoint(t, cpRaw)

	// Leaves at the edges of tiles, and in the last, partial tile.
	for _, i := range []uint64{0, 17, 255, 256, 511, 699} {
		b := tl.bundle(t, cpRaw, i)
		res, err := verify.VerifyBundle(b, tl.v)
		if err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		want := verify.Result{Origin: testOrigin, TreeSize: 700, Root: cp.Hash, LeafIndex: i, LeafHash: rfc6962.DefaultHasher.HashLeaf(record(int(i)))}
		if res.Origin != want.Origin || res.TreeSize != want.TreeSize || !bytes.Equal(res.Root, want.Root) ||
			res.LeafIndex != want.LeafIndex || !bytes.Equal(res.LeafHash, want.LeafHash) {
			t.Fatalf("leaf %d: %+v, want %+v", i, res, want)
		}
	}

	// A bundle survives a JSON round trip and a pretty-printed record: the
	// leaf is the record's canonical form.
	raw, err := json.MarshalIndent(tl.bundle(t, cpRaw, 17), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var pretty verify.Bundle
	if err := json.Unmarshal(raw, &pretty); err != nil {
		t.Fatal(err)
	}
	pretty.Record = json.RawMessage("{\n  \"record_id\" : \"r-17\"\n}\n")
	if _, err := verify.VerifyBundle(&pretty, tl.v); err != nil {
		t.Fatalf("round-tripped, pretty-printed bundle: %v", err)
	}

	otherKey, otherV := newKey(t, testOrigin)
	foreignKey, foreignV := newKey(t, "someone.else/log")
	// resign signs a checkpoint body as the given key would.
	resign := func(s note.Signer, body string) string {
		n, err := note.Sign(&note.Note{Text: body}, s)
		if err != nil {
			t.Fatal(err)
		}
		return string(n)
	}
	body := string(cp.Marshal())

	cases := []struct {
		name   string
		mutate func(b *verify.Bundle)
		v      note.Verifier
		want   verify.Kind
	}{
		{"record value altered", func(b *verify.Bundle) { b.Record = []byte(`{"record_id":"r-18"}`) }, tl.v, verify.KindProof},
		{"record key altered", func(b *verify.Bundle) { b.Record = []byte(`{"record_iD":"r-17"}`) }, tl.v, verify.KindProof},
		{"record one byte not json", func(b *verify.Bundle) { b.Record = []byte(`{"record_id":"r-17"]`) }, tl.v, verify.KindLeaf},
		{"record not an object", func(b *verify.Bundle) { b.Record = []byte(`["r-17"]`) }, tl.v, verify.KindLeaf},
		{"record missing", func(b *verify.Bundle) { b.Record = nil }, tl.v, verify.KindLeaf},
		{"wrong index", func(b *verify.Bundle) { b.LeafIndex = 18 }, tl.v, verify.KindProof},
		{"index past size", func(b *verify.Bundle) { b.LeafIndex = 700 }, tl.v, verify.KindProof},
		{"proof altered", func(b *verify.Bundle) { b.InclusionProof[3][0] ^= 1 }, tl.v, verify.KindProof},
		{"proof truncated", func(b *verify.Bundle) { b.InclusionProof = b.InclusionProof[1:] }, tl.v, verify.KindProof},
		{"checkpoint size altered", func(b *verify.Bundle) {
			b.Checkpoint = strings.Replace(b.Checkpoint, "\n700\n", "\n701\n", 1)
		}, tl.v, verify.KindSignature},
		{"checkpoint signature altered", func(b *verify.Bundle) {
			// A base64 character inside the signature, replaced by
			// another (never by itself). Not the last ones: the last
			// character before the padding also carries padding bits,
			// which decoding ignores.
			i := len(b.Checkpoint) - 10
			repl := "A"
			if b.Checkpoint[i] == 'A' {
				repl = "B"
			}
			b.Checkpoint = b.Checkpoint[:i] + repl + b.Checkpoint[i+1:]
		}, tl.v, verify.KindSignature},
		{"checkpoint signed by another key", func(b *verify.Bundle) { b.Checkpoint = resign(otherKey, body) }, tl.v, verify.KindSignature},
		{"verified with another key", func(b *verify.Bundle) {}, otherV, verify.KindSignature},
		{"verified with another log's key", func(b *verify.Bundle) {}, foreignV, verify.KindSignature},
		{"another log's checkpoint", func(b *verify.Bundle) {
			b.Checkpoint = resign(foreignKey, string(log.Checkpoint{Origin: "someone.else/log", Size: cp.Size, Hash: cp.Hash}.Marshal()))
		}, tl.v, verify.KindSignature},
		{"signed checkpoint naming another origin", func(b *verify.Bundle) {
			b.Checkpoint = resign(tl.signer, string(log.Checkpoint{Origin: "someone.else/log", Size: cp.Size, Hash: cp.Hash}.Marshal()))
		}, tl.v, verify.KindCheckpoint},
		{"signed checkpoint without root", func(b *verify.Bundle) { b.Checkpoint = resign(tl.signer, testOrigin+"\n700\n\n") }, tl.v, verify.KindCheckpoint},
		{"signed checkpoint with bad size", func(b *verify.Bundle) { b.Checkpoint = resign(tl.signer, testOrigin+"\nmany\nAAAA\n") }, tl.v, verify.KindCheckpoint},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := tl.bundle(t, cpRaw, 17)
			c.mutate(b)
			_, err := verify.VerifyBundle(b, c.v)
			if kindOf(err) != c.want {
				t.Fatalf("got %v, want a %s mismatch", err, c.want)
			}
		})
	}
}

// TestVerifyBundleDetail checks that a failed proof shows both ends of
// what did not match.
func TestVerifyBundleDetail(t *testing.T) {
	tl := newTestLog(t)
	cpRaw := tl.add(t, 3)
	b := tl.bundle(t, cpRaw, 1)
	b.Record = []byte(`{"record_id":"r-2"}`)
	_, err := verify.VerifyBundle(b, tl.v)
	m, ok := err.(*verify.MismatchError)
	if !ok {
		t.Fatalf("got %v, want a mismatch", err)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(record(2))
	root := tl.checkpoint(t, cpRaw).Hash
	for _, want := range []string{"leaf hash " + hex.EncodeToString(leaf), "index 1", "root " + hex.EncodeToString(root)} {
		if !strings.Contains(m.Detail, want) {
			t.Errorf("detail %q lacks %q", m.Detail, want)
		}
	}
}
