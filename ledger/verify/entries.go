package verify

import (
	"fmt"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// EntryLeaves parses a tlog-tiles entry bundle (big-endian uint16 length,
// then the entry, repeated) and returns the RFC 6962 leaf hash of each
// entry, in order: the leaves the bundle contributes to the tree.
func EntryLeaves(bundle []byte) ([][]byte, error) {
	var b api.EntryBundle
	if err := b.UnmarshalText(bundle); err != nil {
		return nil, fmt.Errorf("entry bundle: %w", err)
	}
	if len(b.Entries) > layout.EntryBundleWidth {
		return nil, fmt.Errorf("entry bundle: %d entries, at most %d allowed", len(b.Entries), layout.EntryBundleWidth)
	}
	leaves := make([][]byte, len(b.Entries))
	for i, e := range b.Entries {
		leaves[i] = rfc6962.DefaultHasher.HashLeaf(e)
	}
	return leaves, nil
}
