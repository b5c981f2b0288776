package verify_test

import (
	"bytes"
	"testing"

	"github.com/transparency-dev/formats/log"

	"github.com/proofline/proofline/ledger/verify"
)

// TestCheckFollows: an archive links to the previous one only through a
// consistency proof from exactly the previous archive's checkpoint; the
// same size with another root is a fork.
func TestCheckFollows(t *testing.T) {
	root := bytes.Repeat([]byte{1}, 32)
	other := bytes.Repeat([]byte{2}, 32)
	prev := &log.Checkpoint{Origin: testOrigin, Size: 300, Hash: root}
	for _, c := range []struct {
		name    string
		extends *verify.EarlierCheckpoint
		want    verify.Kind
	}{
		{"links", &verify.EarlierCheckpoint{TreeSize: 300, Root: root}, ""},
		{"no proof", nil, verify.KindConsistency},
		{"another size", &verify.EarlierCheckpoint{TreeSize: 256, Root: root}, verify.KindConsistency},
		{"same size, another root", &verify.EarlierCheckpoint{TreeSize: 300, Root: other}, verify.KindFork},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := verify.CheckFollows(prev, &verify.ArchiveResult{TreeSize: 350, Extends: c.extends})
			if got := kindOf(err); got != c.want {
				t.Fatalf("CheckFollows: %v (kind %q), want kind %q", err, got, c.want)
			}
		})
	}
}
