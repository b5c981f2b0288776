package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/transparency-dev/formats/log"
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

	// An archive may also link its checkpoint to an earlier one of the
	// same log (for scheduled archives, the previous archive's), so that
	// a run of archives shows one history, not only one checkpoint each.
	ArchiveEarlierCheckpoint = "consistency/checkpoint" // the earlier signed checkpoint
	ArchiveConsistencyProof  = "consistency/proof"      // "old N" and one base64 hash a line, as C2SP tlog-witness sends a consistency proof
)

// KindConsistency: an archive's consistency proof does not link the
// earlier checkpoint it names to its own, or does not link to the one the
// auditor holds.
const KindConsistency Kind = "consistency"

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
	// Extends is the earlier checkpoint the archive proves its own
	// extends, when it carries one.
	Extends *EarlierCheckpoint `json:"extends,omitempty"`
}

// EarlierCheckpoint is a signed checkpoint an archive's checkpoint was
// proven to extend.
type EarlierCheckpoint struct {
	TreeSize uint64 `json:"tree_size"`
	Root     []byte `json:"root"`
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
	cp, err := OpenArchiveCheckpoint(files, v)
	if err != nil {
		return nil, err
	}
	raw := files[ArchiveCheckpoint]
	res := &ArchiveResult{Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash}
	if res.Extends, err = archivedConsistency(files, v, cp); err != nil {
		return nil, err
	}
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

// OpenArchiveCheckpoint checks an archive's checksums and key and opens
// its signed checkpoint, without proving its records: what an auditor
// needs of the previous archive to link the next one to it.
func OpenArchiveCheckpoint(files ArchiveFiles, v note.Verifier) (*log.Checkpoint, error) {
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
	return OpenCheckpoint(raw, v)
}

// CheckFollows checks that next (a verified archive) links to prev, the
// checkpoint of the archive before it: next must carry a consistency
// proof from exactly that checkpoint. Two signed checkpoints of one size
// with different roots are a fork.
func CheckFollows(prev *log.Checkpoint, next *ArchiveResult) error {
	switch e := next.Extends; {
	case e == nil:
		return mismatch(KindConsistency, "the archive carries no consistency proof, so it cannot be linked to the previous archive's checkpoint at size %d", prev.Size)
	case e.TreeSize == prev.Size && !bytes.Equal(e.Root, prev.Hash):
		return mismatch(KindFork, "the log signed two trees of size %d: root %x in the previous archive, %x in this one's consistency proof", prev.Size, prev.Hash, e.Root)
	case e.TreeSize != prev.Size:
		return mismatch(KindConsistency, "the archive links to the checkpoint at size %d, the previous archive's is at size %d", e.TreeSize, prev.Size)
	}
	return nil
}

// LinkArchive adds to files (an archive being written, holding its
// checkpoint) the earlier signed checkpoint and a consistency proof from
// it to the archive's own, built from f's tiles. VerifyArchive then checks
// the link, so a log that does not extend the earlier checkpoint (a fork
// or a rollback) makes no archive. An empty earlier tree adds nothing.
func LinkArchive(ctx context.Context, f Fetcher, files ArchiveFiles, earlier []byte, v note.Verifier) error {
	old, err := OpenCheckpoint(earlier, v)
	if err != nil {
		return fmt.Errorf("the earlier checkpoint: %w", err)
	}
	cp, err := OpenCheckpoint(files[ArchiveCheckpoint], v)
	if err != nil {
		return err
	}
	if old.Size > cp.Size {
		return mismatch(KindRollback, "the log's checkpoint is at size %d, smaller than the earlier one at size %d", cp.Size, old.Size)
	}
	if old.Size == 0 {
		return nil // every tree extends the empty one: nothing to prove
	}
	var p [][]byte
	if old.Size < cp.Size {
		pb, err := client.NewProofBuilder(ctx, cp.Size, f.ReadTile)
		if err != nil {
			return fmt.Errorf("proof builder: %w", err)
		}
		if p, err = pb.ConsistencyProof(ctx, old.Size, cp.Size); err != nil {
			return fmt.Errorf("consistency proof from size %d to %d: %w", old.Size, cp.Size, err)
		}
	}
	files[ArchiveEarlierCheckpoint] = earlier
	files[ArchiveConsistencyProof] = ConsistencyFile(old.Size, p)
	return nil
}

// ConsistencyFile encodes a consistency proof from a tree of oldSize as
// the archive holds it: the body of a C2SP tlog-witness add-checkpoint
// request without the checkpoint.
func ConsistencyFile(oldSize uint64, p [][]byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", oldSize)
	for _, h := range p {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func parseConsistencyFile(raw []byte) (uint64, [][]byte, error) {
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	var old uint64
	if _, err := fmt.Sscanf(lines[0], "old %d", &old); err != nil || fmt.Sprintf("old %d", old) != lines[0] {
		return 0, nil, fmt.Errorf("first line %q is not \"old N\"", lines[0])
	}
	var p [][]byte
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.Strict().DecodeString(l)
		if err != nil || len(h) != sha256.Size {
			return 0, nil, fmt.Errorf("%q is not a base64 SHA-256 hash", l)
		}
		p = append(p, h)
	}
	return old, p, nil
}

// archivedConsistency checks the archive's optional link to an earlier
// checkpoint: that checkpoint must be the same log's, signed by v, no
// larger than cp, and the proof must lead from its root to cp's.
func archivedConsistency(files ArchiveFiles, v note.Verifier, cp *log.Checkpoint) (*EarlierCheckpoint, error) {
	rawCP, hasCP := files[ArchiveEarlierCheckpoint]
	rawProof, hasProof := files[ArchiveConsistencyProof]
	if !hasCP && !hasProof {
		return nil, nil
	}
	if hasCP != hasProof {
		return nil, mismatch(KindArchive, "the archive must hold both %s and %s, or neither", ArchiveEarlierCheckpoint, ArchiveConsistencyProof)
	}
	old, err := OpenCheckpoint(rawCP, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ArchiveEarlierCheckpoint, err)
	}
	oldSize, p, err := parseConsistencyFile(rawProof)
	if err != nil {
		return nil, mismatch(KindArchive, "%s: %v", ArchiveConsistencyProof, err)
	}
	if oldSize != old.Size || old.Size > cp.Size {
		return nil, mismatch(KindConsistency, "%s is from size %d, the earlier checkpoint is at size %d and the archive's at %d", ArchiveConsistencyProof, oldSize, old.Size, cp.Size)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, cp.Size, p, old.Hash, cp.Hash); err != nil {
		return nil, mismatch(KindConsistency, "the checkpoint at size %d is not shown to extend the earlier one at size %d: %v", cp.Size, old.Size, err)
	}
	return &EarlierCheckpoint{TreeSize: old.Size, Root: old.Hash}, nil
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
