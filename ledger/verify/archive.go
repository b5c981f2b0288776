package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

// KindArchive: the evidence archive is damaged or altered (its container,
// its checksums, or a file it must hold).
const KindArchive Kind = "archive"

// Files of an evidence archive besides the tiles and entry bundles, which
// keep their C2SP tlog-tiles paths.
const (
	ArchiveCheckpoint = "checkpoint"     // the signed (and cosigned) checkpoint the range is proven against
	ArchiveKey        = "log.pub"        // the log's verifier key
	ArchivePolicy     = "witness.policy" // the witness policy, if the log had one
	ArchiveSums       = "SHA256SUMS"     // SHA-256 of every other file, as sha256sum prints them; the last file
)

// ArchiveFiles is an archive's content by path.
type ArchiveFiles map[string][]byte

// ArchiveCorrupt classifies an error reading an archive's container (its
// compression or tar framing) as evidence of damage.
func ArchiveCorrupt(err error) error {
	return mismatch(KindArchive, "the archive cannot be read: %v", err)
}

// ReadArchiveTar reads an (uncompressed) archive strictly: regular files
// only, each once, at most maxBytes in all.
func ReadArchiveTar(r io.Reader, maxBytes int64) (ArchiveFiles, error) {
	files := ArchiveFiles{}
	tr := tar.NewReader(r)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, ArchiveCorrupt(err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, mismatch(KindArchive, "%s is not a regular file", h.Name)
		}
		if _, dup := files[h.Name]; dup {
			return nil, mismatch(KindArchive, "%s is in the archive twice", h.Name)
		}
		if total += h.Size; h.Size < 0 || total > maxBytes {
			return nil, fmt.Errorf("the archive holds more than %d bytes", maxBytes)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, ArchiveCorrupt(err)
		}
		files[h.Name] = b
	}
	return files, nil
}

// Sums is the SHA256SUMS file for files: one "HEX  PATH" line per file,
// sorted by path.
func (files ArchiveFiles) Sums() []byte {
	var b bytes.Buffer
	for _, p := range files.Paths() {
		if p == ArchiveSums {
			continue
		}
		sum := sha256.Sum256(files[p])
		fmt.Fprintf(&b, "%x  %s\n", sum, p)
	}
	return b.Bytes()
}

// Paths returns the archive's paths in the order they are written:
// sorted, with SHA256SUMS last.
func (files ArchiveFiles) Paths() []string {
	paths := make([]string, 0, len(files))
	for p := range files {
		if p != ArchiveSums {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	if _, ok := files[ArchiveSums]; ok {
		paths = append(paths, ArchiveSums)
	}
	return paths
}

// ArchiveResult describes a verified archive.
type ArchiveResult struct {
	Origin   string `json:"origin"`
	TreeSize uint64 `json:"tree_size"`
	Root     []byte `json:"root"`
	// From and To bound the archived leaves, [From, To): whole entry
	// bundles.
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
	// Proven is the number of records proven against the checkpoint.
	Proven    int            `json:"proven"`
	Record    *ArchivedLeaf  `json:"record,omitempty"`
	Witnesses *WitnessResult `json:"witnesses,omitempty"`
}

// ArchivedLeaf is the record asked for and where it is.
type ArchivedLeaf struct {
	ID        string          `json:"record_id"`
	LeafIndex uint64          `json:"leaf_index"`
	Record    json.RawMessage `json:"record"`
}

// VerifyArchive checks an evidence archive offline: its checksums, that
// its key is v's, the checkpoint's signature (and the witness quorum when
// policy is not nil), then proves every archived record (or only the one
// with recordID) against the checkpoint with proofs built from the
// archived tiles.
func VerifyArchive(ctx context.Context, files ArchiveFiles, v note.Verifier, policy *Policy, recordID string) (*ArchiveResult, error) {
	if err := checkSums(files); err != nil {
		return nil, err
	}
	if k := strings.TrimSpace(string(files[ArchiveKey])); k == "" || !sameKey(k, v) {
		return nil, mismatch(KindArchive, "the archive's %s is not the key given (%s)", ArchiveKey, v.Name())
	}
	raw, ok := files[ArchiveCheckpoint]
	if !ok {
		return nil, mismatch(KindArchive, "the archive has no %s", ArchiveCheckpoint)
	}
	cp, err := OpenCheckpoint(raw, v)
	if err != nil {
		return nil, err
	}
	res := &ArchiveResult{Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash}
	if policy != nil {
		if res.Witnesses, err = CheckWitnesses(raw, policy); err != nil {
			return nil, err
		}
	}
	bundles, err := archivedBundles(files, cp.Size)
	if err != nil {
		return nil, err
	}
	res.From = bundles[0].n * layout.EntryBundleWidth
	last := bundles[len(bundles)-1].n
	res.To = min(cp.Size, (last+1)*layout.EntryBundleWidth)

	af := archiveFetcher(files)
	pb, err := client.NewProofBuilder(ctx, cp.Size, af.ReadTile)
	if err != nil {
		return nil, mismatch(KindArchive, "the archived tiles cannot prove against the checkpoint at size %d: %v", cp.Size, err)
	}
	for _, b := range bundles {
		var eb api.EntryBundle
		if err := eb.UnmarshalText(files[b.path]); err != nil {
			return nil, mismatch(KindArchive, "%s: %v", b.path, err)
		}
		want := min(cp.Size-b.n*layout.EntryBundleWidth, layout.EntryBundleWidth)
		if uint64(len(eb.Entries)) != want {
			return nil, mismatch(KindArchive, "%s has %d entries, the tree of size %d has %d there", b.path, len(eb.Entries), cp.Size, want)
		}
		for j, e := range eb.Entries {
			leaf := b.n*layout.EntryBundleWidth + uint64(j)
			if recordID != "" {
				var r struct {
					RecordID string `json:"record_id"`
				}
				if json.Unmarshal(e, &r) != nil || r.RecordID != recordID {
					continue
				}
				res.Record = &ArchivedLeaf{ID: recordID, LeafIndex: leaf, Record: e}
			}
			p, err := pb.InclusionProof(ctx, leaf)
			if err != nil {
				return nil, mismatch(KindArchive, "no inclusion proof for leaf %d from the archived tiles: %v", leaf, err)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, leaf, cp.Size, rfc6962.DefaultHasher.HashLeaf(e), p, cp.Hash); err != nil {
				return nil, mismatch(KindProof, "archived leaf %d does not prove against the checkpoint at size %d: %v", leaf, cp.Size, err)
			}
			res.Proven++
			if res.Record != nil {
				return res, nil
			}
		}
	}
	if recordID != "" {
		return nil, mismatch(KindProof, "record %q is not in the archive (leaves %d to %d)", recordID, res.From, res.To)
	}
	return res, nil
}

// sameKey reports whether vkey is the verifier key of v.
func sameKey(vkey string, v note.Verifier) bool {
	other, err := note.NewVerifier(vkey)
	return err == nil && other.Name() == v.Name() && other.KeyHash() == v.KeyHash()
}

func checkSums(files ArchiveFiles) error {
	sums, ok := files[ArchiveSums]
	if !ok {
		return mismatch(KindArchive, "the archive has no %s", ArchiveSums)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n") {
		hexSum, p, ok := strings.Cut(line, "  ")
		want, err := hex.DecodeString(hexSum)
		if !ok || err != nil || len(want) != sha256.Size || listed[p] {
			return mismatch(KindArchive, "%s: malformed line %q", ArchiveSums, line)
		}
		listed[p] = true
		b, ok := files[p]
		if !ok {
			return mismatch(KindArchive, "%s lists %s, which the archive lacks", ArchiveSums, p)
		}
		if got := sha256.Sum256(b); !bytes.Equal(got[:], want) {
			return mismatch(KindArchive, "%s has SHA-256 %x, %s says %x", p, got, ArchiveSums, want)
		}
	}
	for p := range files {
		if p != ArchiveSums && !listed[p] {
			return mismatch(KindArchive, "%s is not listed in %s", p, ArchiveSums)
		}
	}
	return nil
}

type archivedBundle struct {
	n    uint64
	path string
}

// archivedBundles lists the archive's entry bundles in order; they must
// be contiguous and sized for the checkpoint's tree.
func archivedBundles(files ArchiveFiles, size uint64) ([]archivedBundle, error) {
	const prefix = "tile/entries/"
	var out []archivedBundle
	for p := range files {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		n, w, err := layout.ParseTileIndexPartial(rest)
		if err != nil || layout.EntriesPath(n, w) != p {
			return nil, mismatch(KindArchive, "%s is not an entry bundle path", p)
		}
		if n*layout.EntryBundleWidth >= size || w != layout.PartialTileSize(0, n, size) {
			return nil, mismatch(KindArchive, "%s does not belong to the tree of size %d", p, size)
		}
		out = append(out, archivedBundle{n, p})
	}
	if len(out) == 0 {
		return nil, mismatch(KindArchive, "the archive holds no entry bundles")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	for i := 1; i < len(out); i++ {
		if out[i].n != out[i-1].n+1 {
			return nil, mismatch(KindArchive, "entry bundles %d to %d are missing", out[i-1].n+1, out[i].n-1)
		}
	}
	return out, nil
}

// archiveFetcher reads tiles from an archive as tessera's fetchers read
// them from a log: a partial tile may be served by its full tile.
type archiveFetcher ArchiveFiles

func (a archiveFetcher) ReadTile(_ context.Context, l, i uint64, p uint8) ([]byte, error) {
	for _, w := range []uint8{p, 0} {
		if b, ok := a[layout.TilePath(l, i, w)]; ok {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", layout.TilePath(l, i, p), os.ErrNotExist)
}
