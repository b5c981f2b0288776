package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/ledger/notesig"
	"github.com/proofline/proofline/ledger/verify"
)

// archiveMaxBytes bounds what verify --archive decompresses.
const archiveMaxBytes = 8 << 30

// archiveEpoch is every archived file's modification time: the same range
// of the same checkpoint must give the same bytes.
var archiveEpoch = time.Unix(0, 0).UTC()

// cmdArchive writes an evidence archive: the entry bundles of a range of
// the log, the tiles that prove each of their records against the
// current checkpoint, that (cosigned) checkpoint, the log's key and the
// witness policy, in a deterministic tar compressed with zstd. With
// --previous it also carries the previous archive's checkpoint and a
// consistency proof to its own, so a run of archives is one history.
func cmdArchive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("archive", stderr)
	logURL := fs.String("log", "", "base URL of a live log (serving /checkpoint and /tile/)")
	dataDir := fs.String("data", "", "proofline data directory to read the log from (instead of --log)")
	keyPath := fs.String("key", "", "the log's verifier key file (default with --data: DATA/keys/log.pub)")
	policyPath := fs.String("witness-policy", "", "witness policy file to include (and check the checkpoint against)")
	token := fs.String("token", os.Getenv("PROOFLINE_TOKEN"), "with --log: bearer token when the log is not public (or PROOFLINE_TOKEN)")
	from := fs.Uint64("from", 0, "first leaf index of the range")
	to := fs.Uint64("to", 0, "end of the range, exclusive (default: the checkpoint's tree size)")
	out := fs.String("out", "", "archive file to write (FILE.tar.zst)")
	previous := fs.String("previous", "", "an earlier archive of the same log: include its checkpoint and a consistency proof from it to this archive's")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*logURL == "") == (*dataDir == "") || *out == "" {
		return fmt.Errorf("%w: give exactly one of --log or --data, and --out", errUsage)
	}
	if *keyPath == "" {
		if *dataDir == "" {
			return fmt.Errorf("%w: --key is required with --log", errUsage)
		}
		*keyPath = filepath.Join(keysDir(*dataDir), logPubFile)
	}
	v, err := notesig.LoadVerifier(*keyPath)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	vkey, err := os.ReadFile(*keyPath)
	if err != nil {
		return err
	}
	var policyRaw []byte
	var policy *verify.Policy
	if *policyPath != "" {
		if policyRaw, err = os.ReadFile(*policyPath); err != nil {
			return fmt.Errorf("%w: --witness-policy: %v", errUsage, err)
		}
		if policy, err = verify.ParsePolicy(policyRaw); err != nil {
			return fmt.Errorf("%w: --witness-policy: %v", errUsage, err)
		}
	}
	var src verify.Fetcher
	if *dataDir != "" {
		src = client.FileFetcher{Root: filepath.Join(*dataDir, "log")}
	} else if src, err = logFetcher(*logURL, *token); err != nil {
		return err
	}
	var earlier []byte
	if *previous != "" {
		prev, err := readArchive(*previous)
		if err != nil {
			return fmt.Errorf("--previous: %w", err)
		}
		if _, err := verify.OpenArchiveCheckpoint(prev, v); err != nil {
			return fmt.Errorf("--previous: %w", err)
		}
		earlier = prev[verify.ArchiveCheckpoint]
	}
	files, err := collectArchive(ctx, src, v, policy, *from, *to)
	if err != nil {
		return err
	}
	if earlier != nil {
		if err := verify.LinkArchive(ctx, src, files, earlier, v); err != nil {
			return fmt.Errorf("--previous: %w", err)
		}
	}
	files[verify.ArchiveKey] = append(bytes.TrimSpace(vkey), '\n')
	if policyRaw != nil {
		files[verify.ArchivePolicy] = policyRaw
	}
	files[verify.ArchiveSums] = files.Sums()
	// The archive must verify as it will later: a log serving bad tiles
	// or entries fails now rather than in the auditor's hands.
	res, err := verify.VerifyArchive(ctx, files, v, policy, "")
	if err != nil {
		return fmt.Errorf("the log's resources do not make a verifiable archive: %w", err)
	}
	if err := writeArchive(*out, files); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "archived leaves %d to %d (%d records) of %s, proven against its checkpoint at size %d%s, in %s\n",
		res.From, res.To-1, res.Proven, res.Origin, res.TreeSize, describeExtends(res.Extends), *out)
	return nil
}

// recordingFetcher keeps every tile a proof builder reads, under the path
// it asked for, so the archive holds exactly the proof material used.
type recordingFetcher struct {
	src   verify.Fetcher
	files verify.ArchiveFiles
}

func (r recordingFetcher) ReadTile(ctx context.Context, l, i uint64, p uint8) ([]byte, error) {
	b, err := r.src.ReadTile(ctx, l, i, p)
	if err == nil {
		r.files[layout.TilePath(l, i, p)] = b
	}
	return b, err
}

// collectArchive reads the checkpoint, the entry bundles covering
// [from, to) (rounded out to whole bundles: the units a log serves) and the
// tiles of an inclusion proof for each of their leaves.
func collectArchive(ctx context.Context, src verify.Fetcher, v note.Verifier, policy *verify.Policy, from, to uint64) (verify.ArchiveFiles, error) {
	raw, err := src.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	cp, err := verify.OpenCheckpoint(raw, v)
	if err != nil {
		return nil, err
	}
	if policy != nil {
		if _, err := verify.CheckWitnesses(raw, policy); err != nil {
			return nil, err
		}
	}
	if to == 0 {
		to = cp.Size
	}
	if from >= to || to > cp.Size {
		return nil, fmt.Errorf("%w: the range [%d, %d) is empty or beyond the checkpoint's tree size %d", errUsage, from, to, cp.Size)
	}
	files := verify.ArchiveFiles{verify.ArchiveCheckpoint: raw}
	rec := recordingFetcher{src: src, files: files}
	pb, err := client.NewProofBuilder(ctx, cp.Size, rec.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("proof builder: %w", err)
	}
	for n := from / layout.EntryBundleWidth; n*layout.EntryBundleWidth < to; n++ {
		p := layout.PartialTileSize(0, n, cp.Size)
		b, err := src.ReadEntryBundle(ctx, n, p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", layout.EntriesPath(n, p), err)
		}
		files[layout.EntriesPath(n, p)] = b
		end := min(cp.Size, (n+1)*layout.EntryBundleWidth)
		for leaf := n * layout.EntryBundleWidth; leaf < end; leaf++ {
			if _, err := pb.InclusionProof(ctx, leaf); err != nil {
				return nil, fmt.Errorf("inclusion proof for leaf %d: %w", leaf, err)
			}
		}
	}
	return files, nil
}

// writeArchive writes files as a deterministic tar (sorted paths with
// SHA256SUMS last, fixed times, owners and modes), compressed with zstd
// (its frame checksum on), to path through a temporary file.
func writeArchive(path string, files verify.ArchiveFiles) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".archive-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// One encoder goroutine: the output then depends on the input alone.
	zw, err := zstd.NewWriter(tmp, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderCRC(true))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, p := range files.Paths() {
		h := &tar.Header{Name: p, Mode: 0o644, Size: int64(len(files[p])), ModTime: archiveEpoch, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
		if _, err := tw.Write(files[p]); err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readArchive decompresses and unpacks an archive; damage to its
// container is a mismatch (exit 1), like any other tampering.
func readArchive(path string) (verify.ArchiveFiles, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: --archive: %v", errUsage, err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderMaxMemory(archiveMaxBytes), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, verify.ArchiveCorrupt(err)
	}
	defer zr.Close()
	files, err := verify.ReadArchiveTar(zr, archiveMaxBytes)
	if err != nil {
		return nil, err
	}
	// Bytes after the tar's end (inside the zstd stream) are not part of
	// any file; reading them to the end makes the frame checksum checked.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, verify.ArchiveCorrupt(err)
	}
	return files, nil
}
