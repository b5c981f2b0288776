package exporters

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

// Source reads a proofline log over C2SP tlog-tiles: from the data
// directory of a local log (FileSource) or from any proofline's HTTP API
// (HTTPSource). Everything it returns has been checked against a checkpoint
// whose signature verifies with the log's key and which is consistent with
// every checkpoint this Source saw before: an exporter never forwards an
// entry that the log could later deny.
type Source struct {
	origin   string
	verifier note.Verifier
	fetcher  fetcher

	mu      sync.Mutex
	tracker *client.LogStateTracker
	pb      *client.ProofBuilder
	pbSize  uint64
}

type fetcher interface {
	ReadCheckpoint(ctx context.Context) ([]byte, error)
	ReadTile(ctx context.Context, l, i uint64, p uint8) ([]byte, error)
	ReadEntryBundle(ctx context.Context, i uint64, p uint8) ([]byte, error)
}

// NewFileSource reads the log stored under dir (a data directory's log/).
func NewFileSource(dir string, v note.Verifier) *Source {
	return &Source{origin: v.Name(), verifier: v, fetcher: client.FileFetcher{Root: dir}}
}

// NewHTTPSource reads the log served at base (a proofline's URL, serving
// /checkpoint and /tile/), presenting token as a bearer token when set.
func NewHTTPSource(base, token string, hc *http.Client, v note.Verifier) (*Source, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/") + "/")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("log URL %q: want http(s)://host[:port]", base)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	f, err := client.NewHTTPFetcher(u, hc)
	if err != nil {
		return nil, fmt.Errorf("log URL %q: %w", base, err)
	}
	if token != "" {
		f.SetAuthorizationHeader("Bearer " + token)
	}
	return &Source{origin: v.Name(), verifier: v, fetcher: f}, nil
}

// Origin is the log's origin line.
func (s *Source) Origin() string { return s.origin }

// ErrInconsistent means the log served a checkpoint that does not extend
// the one seen before: a fork or a rollback. It is never retried silently.
var ErrInconsistent = errors.New("log is not consistent with its earlier checkpoint")

// Latest returns the newest checkpoint, verified and proven consistent with
// the previous one this Source accepted (or with trusted, the checkpoint a
// cursor recorded, on the first call). A log with no checkpoint yet returns
// an anchor of size 0.
func (s *Source) Latest(ctx context.Context, trusted []byte) (*Anchor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tracker == nil {
		tr, err := client.NewLogStateTracker(ctx, s.fetcher.ReadTile, trusted, s.verifier, s.origin,
			client.UnilateralConsensus(s.fetcher.ReadCheckpoint))
		if err != nil {
			return nil, s.wrap(err)
		}
		s.tracker = tr
	}
	// Update proves the newest checkpoint consistent with the tracked one
	// and returns the note text of whichever is now tracked.
	_, _, raw, err := s.tracker.Update(ctx)
	if err != nil {
		return nil, s.wrap(err)
	}
	cp := s.tracker.Latest()
	return &Anchor{Origin: s.origin, TreeSize: cp.Size, RootHash: cp.Hash, Note: raw}, nil
}

func (s *Source) wrap(err error) error {
	var inc client.ErrInconsistency
	if errors.As(err, &inc) {
		return fmt.Errorf("%w: %v", ErrInconsistent, err)
	}
	return fmt.Errorf("read checkpoint of %s: %w", s.origin, err)
}

// Read returns the leaves [from, to) of the tree committed to by a, proven
// to be exactly those leaves of a's signed tree: the compact range of
// [0, from) is read from the log's tiles, the batch's leaf hashes are
// appended to it, and the resulting root of the tree of size `to` is
// proven consistent with a's root (RFC 6962 consistency proof, or equal
// when to is a's size). Forged tiles or entries cannot pass: they would
// give another root. This costs about two hashes per leaf and one proof
// per batch, not an inclusion proof per leaf.
func (s *Source) Read(ctx context.Context, a *Anchor, from, to uint64) ([]Event, error) {
	if to > a.TreeSize || from > to {
		return nil, fmt.Errorf("read [%d, %d) beyond tree size %d", from, to, a.TreeSize)
	}
	if from == to {
		return nil, nil
	}
	left, err := s.rangeNodes(ctx, from, a.TreeSize)
	if err != nil {
		return nil, fmt.Errorf("read the tree's nodes below leaf %d: %w", from, err)
	}
	rng, err := rangeFactory.NewRange(0, from, left)
	if err != nil {
		return nil, fmt.Errorf("compact range [0, %d): %w", from, err)
	}
	out := make([]Event, 0, to-from)
	for i := from; i < to; {
		bundleIdx := i / 256
		b, err := client.GetEntryBundle(ctx, s.fetcher.ReadEntryBundle, bundleIdx, a.TreeSize)
		if err != nil {
			return nil, fmt.Errorf("read entry bundle %d: %w", bundleIdx, err)
		}
		for ; i < to && i/256 == bundleIdx; i++ {
			k := int(i % 256)
			if k >= len(b.Entries) {
				return nil, fmt.Errorf("entry bundle %d has %d entries, want leaf %d", bundleIdx, len(b.Entries), i)
			}
			leaf := b.Entries[k]
			if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(leaf), nil); err != nil {
				return nil, err
			}
			// A leaf that is not a call record stays an event, marked:
			// once the batch is proven it is in the log for good, and the
			// runner dead-letters it rather than retrying a read that can
			// only fail again (a leaf altered on disk fails the proof).
			f, err := leafFields(leaf)
			if err != nil {
				err = fmt.Errorf("leaf %d: %w", i, err)
			}
			out = append(out, Event{
				Evidence: Evidence{Origin: s.origin, LeafIndex: i, TreeSize: a.TreeSize, RecordID: f.RecordID},
				Record:   leaf, region: f.Region, dataClass: f.DataClass, tsStart: f.TSStart, notRecord: err,
			})
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if to == a.TreeSize {
		if !bytes.Equal(root, a.RootHash) {
			return nil, fmt.Errorf("%w: leaves [%d, %d) do not give the checkpoint's root at size %d", ErrInconsistent, from, to, a.TreeSize)
		}
		return out, nil
	}
	p, err := s.consistencyProof(ctx, to, a.TreeSize)
	if err != nil {
		return nil, err
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, to, a.TreeSize, p, root, a.RootHash); err != nil {
		return nil, fmt.Errorf("%w: leaves [%d, %d) are not the first %d leaves of the checkpoint at size %d: %v", ErrInconsistent, from, to, to, a.TreeSize, err)
	}
	return out, nil
}

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// rangeNodes returns the hashes of the compact range [0, end) read from the
// tiles of the tree of size treeSize. tessera's client.FetchRangeNodes reads
// the partial tiles of a tree of size end, which a log that has grown
// beyond end no longer serves; here every node is a perfect subtree of the
// published tree, computed from the tile row below it. The hashes are not
// trusted: Read checks the root they lead to against the checkpoint.
func (s *Source) rangeNodes(ctx context.Context, end, treeSize uint64) ([][]byte, error) {
	ids := compact.RangeNodes(0, end, nil)
	out := make([][]byte, 0, len(ids))
	tiles := map[[2]uint64][][]byte{}
	for _, id := range ids {
		tileLevel := uint64(id.Level) / layout.TileHeight
		base := tileLevel * layout.TileHeight
		span := uint64(1) << (uint64(id.Level) - base) // nodes of the tile's row under id
		first := id.Index * span
		tileIdx := first / layout.TileWidth
		key := [2]uint64{tileLevel, tileIdx}
		row, ok := tiles[key]
		if !ok {
			raw, err := s.fetcher.ReadTile(ctx, tileLevel, tileIdx, layout.PartialTileSize(tileLevel, tileIdx, treeSize))
			if err != nil {
				return nil, fmt.Errorf("tile %d/%d: %w", tileLevel, tileIdx, err)
			}
			var ht api.HashTile
			if err := ht.UnmarshalText(raw); err != nil {
				return nil, fmt.Errorf("tile %d/%d: %w", tileLevel, tileIdx, err)
			}
			row, tiles[key] = ht.Nodes, ht.Nodes
		}
		lo := first % layout.TileWidth
		if lo+span > uint64(len(row)) {
			return nil, fmt.Errorf("tile %d/%d has %d hashes, node %d/%d needs %d", tileLevel, tileIdx, len(row), id.Level, id.Index, lo+span)
		}
		hs := append([][]byte(nil), row[lo:lo+span]...)
		for len(hs) > 1 {
			next := make([][]byte, len(hs)/2)
			for j := range next {
				next[j] = rfc6962.DefaultHasher.HashChildren(hs[2*j], hs[2*j+1])
			}
			hs = next
		}
		out = append(out, hs[0])
	}
	return out, nil
}

// consistencyProof proves the tree of size from a prefix of the tree of
// size size, with a proof builder cached per size. tessera's ProofBuilder
// is not safe for concurrent use (its node cache is a plain map), and the
// sinks and their read-ahead share this Source: the builder is used under
// s.mu only.
func (s *Source) consistencyProof(ctx context.Context, from, size uint64) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pb == nil || s.pbSize != size {
		pb, err := client.NewProofBuilder(ctx, size, s.fetcher.ReadTile)
		if err != nil {
			return nil, fmt.Errorf("proof builder at size %d: %w", size, err)
		}
		s.pb, s.pbSize = pb, size
	}
	p, err := s.pb.ConsistencyProof(ctx, from, size)
	if err != nil {
		return nil, fmt.Errorf("consistency proof %d → %d: %w", from, size, err)
	}
	return p, nil
}

type fields struct {
	RecordID  string `json:"record_id"`
	Region    string `json:"region"`
	DataClass string `json:"data_class"`
	TSStart   string `json:"ts_start"`
}

// leafFields reads what the runner needs from a leaf's top level. It runs
// once per leaf per sink, so it scans with gjson (which skips nested
// values without decoding them: 4–5× cheaper than a struct decode with
// encoding/json/v2). It does not validate the whole leaf: the leaf was
// checked strictly at ingest, and the Merkle proof in Read shows it is
// that leaf byte for byte.
func leafFields(leaf []byte) (fields, error) {
	var f fields
	r := gjson.ParseBytes(leaf)
	if !r.IsObject() {
		return f, errNotACallRecord
	}
	ok := true
	r.ForEach(func(k, v gjson.Result) bool {
		var dst *string
		switch k.Str {
		case "record_id":
			dst = &f.RecordID
		case "region":
			dst = &f.Region
		case "data_class":
			dst = &f.DataClass
		case "ts_start":
			dst = &f.TSStart
		default:
			return true
		}
		if v.Type != gjson.String {
			ok = false
			return false
		}
		*dst = v.Str
		return true
	})
	if !ok || f.RecordID == "" {
		return f, errNotACallRecord
	}
	return f, nil
}

var errNotACallRecord = errors.New("not a call record")
