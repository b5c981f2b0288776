package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/ledger/verify"
)

// archiveFlags are serve's scheduled-archiving flags.
type archiveFlags struct {
	dir    string
	every  time.Duration
	keep   int
	maxAge time.Duration
}

func (a *archiveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.dir, "archive-dir", "", "write an evidence archive of the log's new entries into this directory every --archive-every, with an index.json")
	fs.DurationVar(&a.every, "archive-every", 24*time.Hour, "period of scheduled archives (with --archive-dir)")
	fs.IntVar(&a.keep, "archive-keep", 0, "keep at most this many scheduled archives, removing the oldest (0: all)")
	fs.DurationVar(&a.maxAge, "archive-max-age", 0, "remove scheduled archives older than this (0: never)")
}

// validate checks the flags before any engine starts.
func (a *archiveFlags) validate(roles roleSet) error {
	switch {
	case a.dir == "":
		return nil
	case !roles["signer"]:
		return fmt.Errorf("%w: --archive-dir needs the signer role, which holds the log", errUsage)
	case a.every <= 0:
		return fmt.Errorf("%w: --archive-every must be positive", errUsage)
	case a.keep < 0 || a.maxAge < 0:
		return fmt.Errorf("%w: --archive-keep and --archive-max-age must not be negative", errUsage)
	}
	return nil
}

// archiveIndexFile lists the scheduled archives, oldest first.
const archiveIndexFile = "index.json"

// archiveIndexEntry is one scheduled archive.
type archiveIndexEntry struct {
	File string `json:"file"`
	// From and To are the archived leaves, [From, To); the next archive
	// starts at To.
	From     uint64 `json:"from"`
	To       uint64 `json:"to"`
	TreeSize uint64 `json:"tree_size"`
	SHA256   string `json:"sha256"`
	// Checkpoint is the signed checkpoint the archive was proven against:
	// the next archive proves its own extends it.
	Checkpoint string    `json:"checkpoint,omitempty"`
	Bytes      int64     `json:"bytes"`
	Created    time.Time `json:"created"`
}

// archiver writes, every period, one archive of the entry bundles
// completed since the last one. Archives hold whole bundles only, so they
// tile the log without overlap (archive N ends where N+1 starts) and a
// bundle is archived once it is complete. Each archive after the first
// carries the previous one's checkpoint and a consistency proof to its
// own, so the run of archives is one history.
type archiver struct {
	flags   archiveFlags
	logDir  string
	v       note.Verifier
	vkey    []byte
	policy  []byte
	logger  *slog.Logger
	nowFunc func() time.Time
}

func (a *archiver) run(ctx context.Context) {
	a.logger.Info("scheduled archiving", "dir", a.flags.dir, "every", a.flags.every.String())
	t := time.NewTicker(a.flags.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.once(ctx); err != nil && ctx.Err() == nil {
			a.logger.Error("scheduled archive", "err", err)
		}
	}
}

func (a *archiver) now() time.Time {
	if a.nowFunc != nil {
		return a.nowFunc()
	}
	return time.Now()
}

func (a *archiver) once(ctx context.Context) error {
	if err := os.MkdirAll(a.flags.dir, 0o755); err != nil {
		return err
	}
	idx, err := loadArchiveIndex(a.flags.dir)
	if err != nil {
		return err
	}
	var from uint64
	var earlier []byte
	if len(idx) > 0 {
		from = idx[len(idx)-1].To
		if c := idx[len(idx)-1].Checkpoint; c != "" {
			earlier = []byte(c)
		}
	}
	src := client.FileFetcher{Root: a.logDir}
	raw, err := src.ReadCheckpoint(ctx)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	cp, err := verify.OpenCheckpoint(raw, a.v)
	if err != nil {
		return err
	}
	to := cp.Size / layout.EntryBundleWidth * layout.EntryBundleWidth
	if to > from {
		files, err := collectArchive(ctx, src, a.v, nil, from, to)
		if err != nil {
			return err
		}
		if earlier != nil {
			// A log that does not extend the previous archive's
			// checkpoint makes no archive: that is a fork or a
			// rollback, and the error says so.
			if err := verify.LinkArchive(ctx, src, files, earlier, a.v); err != nil {
				return err
			}
		}
		files[verify.ArchiveKey] = a.vkey
		if a.policy != nil {
			files[verify.ArchivePolicy] = a.policy
		}
		files[verify.ArchiveSums] = files.Sums()
		if _, err := verify.VerifyArchive(ctx, files, a.v, nil, ""); err != nil {
			return fmt.Errorf("the log's resources do not make a verifiable archive: %w", err)
		}
		name := fmt.Sprintf("proofline-%012d-%012d.tar.zst", from, to)
		path := filepath.Join(a.flags.dir, name)
		if err := writeArchive(path, files); err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		idx = append(idx, archiveIndexEntry{File: name, From: from, To: to, TreeSize: cp.Size, SHA256: fmt.Sprintf("%x", sum), Checkpoint: string(raw), Bytes: int64(len(b)), Created: a.now().UTC()})
		a.logger.Info("archive written", "file", path, "from", from, "to", to, "bytes", len(b))
	}
	idx, removed := a.retain(idx)
	// The index is written before old files go: a crash in between leaves
	// an unlisted file, never a listed one that is missing.
	if err := saveArchiveIndex(a.flags.dir, idx); err != nil {
		return err
	}
	for _, e := range removed {
		if err := os.Remove(filepath.Join(a.flags.dir, e.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		a.logger.Info("archive removed by retention", "file", e.File)
	}
	return nil
}

// retain drops the oldest archives beyond --archive-keep and those older
// than --archive-max-age. The last one always stays: it is where the next
// archive starts.
func (a *archiver) retain(idx []archiveIndexEntry) (kept, removed []archiveIndexEntry) {
	cut := 0
	if a.flags.keep > 0 && len(idx) > a.flags.keep {
		cut = len(idx) - a.flags.keep
	}
	if a.flags.maxAge > 0 {
		for cut < len(idx)-1 && a.now().Sub(idx[cut].Created) > a.flags.maxAge {
			cut++
		}
	}
	cut = min(cut, len(idx)-1)
	if cut <= 0 {
		return idx, nil
	}
	return idx[cut:], idx[:cut]
}

func loadArchiveIndex(dir string) ([]archiveIndexEntry, error) {
	raw, err := os.ReadFile(filepath.Join(dir, archiveIndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var idx []archiveIndexEntry
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, archiveIndexFile), err)
	}
	if !sort.SliceIsSorted(idx, func(i, j int) bool { return idx[i].From < idx[j].From }) {
		return nil, fmt.Errorf("%s: entries out of order", filepath.Join(dir, archiveIndexFile))
	}
	return idx, nil
}

func saveArchiveIndex(dir string, idx []archiveIndexEntry) error {
	if idx == nil {
		idx = []archiveIndexEntry{}
	}
	raw, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, archiveIndexFile), append(raw, '\n'))
}
