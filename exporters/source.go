package exporters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
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

// Read returns the leaves [from, to) of the tree committed to by a, each
// proven included in it (RFC 6962 inclusion proof from the log's tiles
// against a's signed root). It reads whole entry bundles, so a range
// costs one fetch per 256 leaves.
func (s *Source) Read(ctx context.Context, a *Anchor, from, to uint64) ([]Event, error) {
	if to > a.TreeSize || from > to {
		return nil, fmt.Errorf("read [%d, %d) beyond tree size %d", from, to, a.TreeSize)
	}
	pb, err := s.proofBuilder(ctx, a.TreeSize)
	if err != nil {
		return nil, err
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
			p, err := pb.InclusionProof(ctx, i)
			if err != nil {
				return nil, fmt.Errorf("inclusion proof for leaf %d: %w", i, err)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, a.TreeSize, rfc6962.DefaultHasher.HashLeaf(leaf), p, a.RootHash); err != nil {
				return nil, fmt.Errorf("%w: leaf %d does not verify against the checkpoint at size %d: %v", ErrInconsistent, i, a.TreeSize, err)
			}
			id, err := recordID(leaf)
			if err != nil {
				return nil, fmt.Errorf("leaf %d: %w", i, err)
			}
			out = append(out, Event{
				Evidence: Evidence{Origin: s.origin, LeafIndex: i, TreeSize: a.TreeSize, RecordID: id},
				Record:   leaf,
			})
		}
	}
	return out, nil
}

func (s *Source) proofBuilder(ctx context.Context, size uint64) (*client.ProofBuilder, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pb != nil && s.pbSize == size {
		return s.pb, nil
	}
	pb, err := client.NewProofBuilder(ctx, size, s.fetcher.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("proof builder at size %d: %w", size, err)
	}
	s.pb, s.pbSize = pb, size
	return pb, nil
}

// recordID reads the record id from a leaf's canonical record bytes.
func recordID(leaf []byte) (string, error) {
	var r struct {
		RecordID string `json:"record_id"`
	}
	if err := json.Unmarshal(leaf, &r); err != nil || r.RecordID == "" {
		return "", fmt.Errorf("not a call record")
	}
	return r.RecordID, nil
}
