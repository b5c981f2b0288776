// Package ledger is proofline's append-only Merkle log: call records in
// their canonical form are sequenced by tessera (C2SP tlog-tiles on POSIX
// storage by default), checkpoints are signed notes, and proofs are served
// from the same tiles auditors fetch.
//
// The log is written by one appender, the signer. A record id can only ever
// become one leaf: an index from record id to leaf index, kept beside the
// log and rebuilt from it after a crash, is checked before every append.
package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

var (
	// ErrNotFound means no leaf carries the record id.
	ErrNotFound = errors.New("record not in the log")
	// ErrNotPublished means the record is sequenced but no published
	// checkpoint covers it yet; asking again shortly will succeed.
	ErrNotPublished = errors.New("record sequenced but not yet covered by a published checkpoint")
	// ErrBadRange is returned for a consistency request outside the tree.
	ErrBadRange = errors.New("bad tree range")
)

// Config configures a Log.
type Config struct {
	// Dir holds the tiles, entry bundles and checkpoint (servable as-is
	// under C2SP tlog-tiles paths), and the private state beside them.
	Dir string
	// Signer signs checkpoints; its name is the log origin.
	Signer note.Signer
	// Verifier checks the log's own checkpoints before proofs are built
	// against them.
	Verifier note.Verifier
	// BatchMaxSize and BatchMaxAge bound how long an entry waits to be
	// sequenced; CheckpointInterval how often a checkpoint is published.
	BatchMaxSize       uint
	BatchMaxAge        time.Duration
	CheckpointInterval time.Duration
	// AuditInterval is how often the log audits itself (Log.Audit); 0
	// means DefaultAuditInterval, negative only at start and every
	// AuditEvery appends. AuditEvery (0: DefaultAuditEvery) bounds how
	// many entries may be appended between two audits under load;
	// AuditRecheck (0: DefaultAuditRecheck) is how many of the newest
	// full entry bundles every audit re-derives even when unchanged.
	// The whole log is audited at Open.
	AuditInterval time.Duration
	AuditEvery    uint64
	AuditRecheck  int
	Logger        *slog.Logger
	// Witnesses, when set, publish only checkpoints cosigned by a quorum
	// of witnesses (witness.go).
	Witnesses *WitnessConfig
}

// Entry is one leaf to append: the record id and its canonical bytes.
type Entry struct {
	ID   string
	Data []byte
}

// Appended is where an entry landed.
type Appended struct {
	Index uint64
	// Duplicate is true when the record id was already in the log with
	// the same bytes; Index is then the earlier leaf.
	Duplicate bool
	// Conflict is true when the record id is held by a different leaf
	// (other bytes): the entry was not appended, and Index is the leaf
	// that holds the id, unless HolderUnknown (the batch that was adding
	// the holder failed; it will be redelivered and appended).
	Conflict, HolderUnknown bool
}

// Log is an open Merkle log.
type Log struct {
	cfg      Config
	origin   string
	appender *tessera.Appender
	shutdown func(context.Context) error
	reader   tessera.LogReader
	idx      *index
	stopLife context.CancelFunc
	// mu makes Add's "already in the log?" check and its claim of the
	// new ids in inflight one step, which no other batch's check or
	// cleanup can interleave with; it also guards inflight.
	mu sync.Mutex
	// appendMu keeps the hand-over of batches to tessera in the order of
	// their Adds. It is not mu: tessera's Add blocks while the batch before
	// is written (pushback), and ingest's Check, which needs mu, must not
	// wait for the disk.
	appendMu sync.Mutex
	// inflight is the batch that added each id not yet indexed.
	inflight map[string]*Pending
	audit    *selfAudit
	// commitMu serialises Wait; hwFrozen (under it) stops the index's
	// high-water mark after a failed batch, for the rest of the process.
	commitMu sync.Mutex
	hwFrozen bool
	// wit observes the witnesses; nil without a witness policy.
	wit *witnessing
}

// Open opens (or creates) the log in cfg.Dir and brings the record index up
// to date with every entry already sequenced.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.Signer == nil || cfg.Verifier == nil {
		return nil, errors.New("ledger: signer and verifier are required")
	}
	if cfg.Signer.Name() != cfg.Verifier.Name() {
		return nil, fmt.Errorf("ledger: signer origin %q does not match verifier origin %q", cfg.Signer.Name(), cfg.Verifier.Name())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BatchMaxSize == 0 {
		cfg.BatchMaxSize = 4096
	}
	if cfg.BatchMaxAge == 0 {
		cfg.BatchMaxAge = 50 * time.Millisecond
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 200 * time.Millisecond
	}
	if cfg.AuditInterval == 0 {
		cfg.AuditInterval = DefaultAuditInterval
	}
	if cfg.AuditEvery == 0 {
		cfg.AuditEvery = DefaultAuditEvery
	}
	if cfg.AuditRecheck == 0 {
		cfg.AuditRecheck = DefaultAuditRecheck
	}
	logDir := filepath.Join(cfg.Dir, "log")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger dir: %w", err)
	}
	// tessera's sequencing and publishing loops run on the context given
	// here. They must outlive the caller's (often a signal) context until
	// Close, or an append in flight at shutdown would never complete.
	lifeCtx, stopLife := context.WithCancel(context.WithoutCancel(ctx))
	ctx = lifeCtx
	ok := false
	defer func() {
		if !ok {
			stopLife()
		}
	}()
	wit, err := newWitnessing(cfg.Witnesses, cfg.Logger)
	if err != nil {
		return nil, err
	}
	driver, err := posix.New(ctx, posix.Config{Path: logDir, HTTPClient: wit.httpClient()})
	if err != nil {
		return nil, fmt.Errorf("tessera posix storage: %w", err)
	}
	audit := newSelfAudit(logDir, cfg.Verifier, cfg.AuditRecheck, cfg.AuditEvery)
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(gatedSigner{Signer: cfg.Signer, audit: audit}).
		WithBatching(cfg.BatchMaxSize, cfg.BatchMaxAge).
		WithCheckpointInterval(cfg.CheckpointInterval).
		// The signer bounds what is in flight through its consumer's
		// MaxAckPending; pushback here would only turn that into retries.
		WithPushback(1 << 20)
	opts = wit.appendOptions(opts)
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if wit.firstPublishFailed(err) {
		appender, shutdown, reader, err = tessera.NewAppender(ctx, driver, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("tessera appender: %w", err)
	}
	idx, err := openIndex(filepath.Join(cfg.Dir, "index"), cfg.Logger)
	if err != nil {
		_ = shutdown(ctx)
		return nil, err
	}
	l := &Log{cfg: cfg, origin: cfg.Signer.Name(), appender: appender, shutdown: shutdown, reader: reader, idx: idx, stopLife: stopLife, inflight: map[string]*Pending{}, audit: audit, wit: wit}
	// Before the index was kept in Pebble it was a bbolt file; that file
	// is not read: the reconcile below rebuilds the new index from the
	// log (every entry carries its id), then the old file is removed.
	legacy := filepath.Join(cfg.Dir, "index.db")
	_, statErr := os.Stat(legacy)
	hasLegacy := statErr == nil
	if hasLegacy {
		cfg.Logger.Info("the record index moved from index.db (bbolt) to index/ (Pebble); rebuilding it from the log", "dir", cfg.Dir)
	}
	if err := l.reconcile(ctx); err != nil {
		_ = l.Close(ctx)
		return nil, err
	}
	if hasLegacy {
		if err := os.Remove(legacy); err != nil {
			cfg.Logger.Warn("could not remove the old record index", "path", legacy, "err", err)
		}
	}
	// The whole log is audited before anything is appended on top: a log
	// whose stored entries or tiles disagree with what it signed must not
	// grow, and the operator learns it at start rather than from an
	// auditor.
	if err := l.startAudit(ctx); err != nil {
		_ = l.Close(ctx)
		return nil, err
	}
	go l.auditLoop(ctx, cfg.AuditInterval)
	ok = true
	return l, nil
}

// Origin is the log's origin line, the name auditors verify against.
func (l *Log) Origin() string { return l.origin }

// TilesDir is the directory served under the C2SP tlog-tiles paths.
func (l *Log) TilesDir() string { return filepath.Join(l.cfg.Dir, "log") }

// Close stops the appender after publishing a final checkpoint.
func (l *Log) Close(ctx context.Context) error {
	var errs []error
	if l.shutdown != nil {
		if err := l.shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tessera shutdown: %w", err))
		}
	}
	if err := l.idx.close(); err != nil {
		errs = append(errs, err)
	}
	l.stopLife()
	return errors.Join(errs...)
}

// reconcile indexes every sequenced entry past the index's high-water mark.
// Entries land there when the process died after tessera sequenced them but
// before their ids were indexed; without this a redelivered record would
// become a second leaf.
func (l *Log) reconcile(ctx context.Context) error {
	size, err := l.reader.IntegratedSize(ctx)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("integrated size: %w", err)
	}
	hw, err := l.idx.highWater()
	if err != nil {
		return fmt.Errorf("index high-water: %w", err)
	}
	if hw >= size {
		return nil
	}
	l.cfg.Logger.Info("indexing log entries past the index high-water mark", "from", hw, "to", size)
	for ri := range layout.Range(hw, size-hw, size) {
		raw, err := l.reader.ReadEntryBundle(ctx, ri.Index, ri.Partial)
		if err != nil {
			return fmt.Errorf("read entry bundle %d: %w", ri.Index, err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return fmt.Errorf("parse entry bundle %d: %w", ri.Index, err)
		}
		if int(ri.First+ri.N) > len(b.Entries) {
			return fmt.Errorf("entry bundle %d has %d entries, want at least %d", ri.Index, len(b.Entries), ri.First+ri.N)
		}
		ids := make(map[string]held, ri.N)
		for i := ri.First; i < ri.First+ri.N; i++ {
			id, err := RecordID(b.Entries[i])
			if err != nil {
				return fmt.Errorf("entry %d: %w", ri.Index*layout.EntryBundleWidth+uint64(i), err)
			}
			leaf := ri.Index*layout.EntryBundleWidth + uint64(i)
			if _, dup := ids[id]; !dup {
				ids[id] = held{leaf: leaf, hash: leafHash(b.Entries[i])}
			}
		}
		end := ri.Index*layout.EntryBundleWidth + uint64(ri.First+ri.N)
		if err := l.idx.put(ids, end); err != nil {
			return fmt.Errorf("index entries: %w", err)
		}
	}
	return nil
}

// RecordID extracts the record id from a leaf's canonical record bytes.
func RecordID(leaf []byte) (string, error) {
	var r struct {
		RecordID string `json:"record_id"`
	}
	if err := json.Unmarshal(leaf, &r); err != nil {
		return "", fmt.Errorf("leaf is not a call record: %w", err)
	}
	if r.RecordID == "" {
		return "", errors.New("leaf has no record_id")
	}
	return r.RecordID, nil
}

// Append sequences entries into the log and returns where each landed. It
// returns only once every new entry is durably sequenced and indexed, so a
// caller may acknowledge its source afterwards. Entries whose id is already
// in the log, or earlier in the same call, are not appended again.
//
// On error, some entries may have been sequenced; they are indexed before
// Append returns (or by the reconcile of the next Open), so retrying the
// whole batch is safe.
func (l *Log) Append(ctx context.Context, entries []Entry) ([]Appended, error) {
	p, err := l.Add(ctx, entries)
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// Pending is a batch handed to the log by Add and not yet known to be
// sequenced.
type Pending struct {
	l       *Log
	entries []Entry
	out     []Appended
	futures map[int]tessera.IndexFuture
	// hashes are the new entries' RFC 6962 leaf hashes, as tessera
	// computed them when the entries were made (one hash, not two).
	hashes map[int][sha256.Size]byte
	// firstInBatch is the first entry of each id in this batch.
	firstInBatch map[string]int
	// earlier are entries whose id an earlier, still pending batch added.
	earlier map[int]*Pending
	// added is where this batch's new entries landed, once waited for.
	added map[string]uint64
	// conflicts are entries whose id a different entry holds.
	conflicts map[int]bool
	err       error
}

// Add hands entries to the log without waiting for them to be sequenced,
// so that the next batch can be added while this one is being written:
// sequencing is mostly waiting for the disk, and a writer that waited for
// each batch before adding the next left the log idle in between. Call
// Wait on each Pending, in the order of the Adds, before acknowledging its
// source. An id already in the log, or in a batch still pending, is not
// appended again.
func (l *Log) Add(ctx context.Context, entries []Entry) (*Pending, error) {
	if err := l.IntegrityErr(); err != nil {
		return nil, fmt.Errorf("not appending: %w", err)
	}
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.Lock()
	unlocked := false
	defer func() {
		if !unlocked {
			l.mu.Unlock()
		}
	}()
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	known, err := l.idx.holders(ids)
	if err != nil {
		return nil, fmt.Errorf("index lookup: %w", err)
	}
	p := &Pending{l: l, entries: entries, out: make([]Appended, len(entries)),
		futures: make(map[int]tessera.IndexFuture, len(entries)), hashes: make(map[int][sha256.Size]byte, len(entries)),
		firstInBatch: make(map[string]int, len(entries))}
	for i, e := range entries {
		if h, ok := known[e.ID]; ok {
			same := h.holds(e.Data)
			p.out[i] = Appended{Index: h.leaf, Duplicate: same, Conflict: !same}
			continue
		}
		if q, ok := l.inflight[e.ID]; ok {
			if p.earlier == nil {
				p.earlier = map[int]*Pending{}
			}
			p.earlier[i] = q
			if !bytes.Equal(q.entries[q.firstInBatch[e.ID]].Data, e.Data) {
				p.conflict(i)
			}
			continue
		}
		if j, ok := p.firstInBatch[e.ID]; ok {
			if !bytes.Equal(entries[j].Data, e.Data) {
				p.conflict(i)
			}
			continue
		}
		p.firstInBatch[e.ID] = i
	}
	for id := range p.firstInBatch {
		l.inflight[id] = p
	}
	// The ids are claimed: a concurrent check finds them in inflight.
	unlocked = true
	l.mu.Unlock()
	for i, e := range entries {
		if j, ok := p.firstInBatch[e.ID]; ok && j == i {
			te := tessera.NewEntry(e.Data)
			var h [sha256.Size]byte
			copy(h[:], te.LeafHash())
			p.hashes[i] = h
			p.futures[i] = l.appender.Add(ctx, te)
		}
	}
	return p, nil
}

// Wait returns once the batch's new entries are durably sequenced and
// indexed, and where every entry landed.
func (p *Pending) Wait() ([]Appended, error) {
	l := p.l
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	defer func() {
		l.mu.Lock()
		for id := range p.firstInBatch {
			if l.inflight[id] == p {
				delete(l.inflight, id)
			}
		}
		l.mu.Unlock()
	}()
	p.added = make(map[string]uint64, len(p.futures))
	puts := make(map[string]held, len(p.futures))
	var errs []error
	var hw uint64
	for i, f := range p.futures {
		got, err := f()
		if err != nil {
			errs = append(errs, fmt.Errorf("append %s: %w", p.entries[i].ID, err))
			continue
		}
		p.out[i] = Appended{Index: got.Index}
		p.added[p.entries[i].ID] = got.Index
		puts[p.entries[i].ID] = held{leaf: got.Index, hash: p.hashes[i]}
		hw = max(hw, got.Index+1)
	}
	// The high-water mark only moves while every batch so far succeeded:
	// after a gap, the missing leaves might still be sequenced later by
	// tessera and must then be found by the reconcile of the next Open.
	if len(errs) > 0 {
		l.hwFrozen = true
	}
	if l.hwFrozen {
		hw = 0
	}
	if err := l.idx.put(puts, hw); err != nil {
		errs = append(errs, fmt.Errorf("index: %w", err))
	}
	p.err = errors.Join(errs...)
	l.audit.appended(len(p.added))
	return p.result()
}

func (p *Pending) result() ([]Appended, error) {
	if p.err != nil {
		return nil, p.err
	}
	for i, e := range p.entries {
		if j, ok := p.firstInBatch[e.ID]; ok && j != i {
			p.out[i] = Appended{Index: p.out[j].Index, Duplicate: !p.conflicts[i], Conflict: p.conflicts[i]}
		}
	}
	// Waits run in the order of the Adds, so an earlier batch has its
	// result by now.
	for i, q := range p.earlier {
		leaf, ok := q.added[p.entries[i].ID]
		if p.conflicts[i] {
			p.out[i] = Appended{Index: leaf, Conflict: true, HolderUnknown: !ok || q.err != nil}
			continue
		}
		if !ok || q.err != nil {
			return nil, fmt.Errorf("append %s: the batch that first added it failed", p.entries[i].ID)
		}
		p.out[i] = Appended{Index: leaf, Duplicate: true}
	}
	return p.out, nil
}

// Lookup returns the leaf index of a record id.
func (l *Log) Lookup(id string) (uint64, error) {
	leaf, ok, err := l.idx.get(id)
	if err != nil {
		return 0, fmt.Errorf("index lookup: %w", err)
	}
	if !ok {
		return 0, ErrNotFound
	}
	return leaf, nil
}

// Checkpoint returns the latest published checkpoint, verified with the
// log's own key, and its raw signed-note bytes.
func (l *Log) Checkpoint(ctx context.Context) (*log.Checkpoint, []byte, error) {
	raw, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read checkpoint: %w", err)
	}
	cp, _, _, err := log.ParseCheckpoint(raw, l.origin, l.cfg.Verifier)
	if err != nil {
		return nil, nil, fmt.Errorf("parse own checkpoint: %w", err)
	}
	return cp, raw, nil
}

// IntegratedSize is the number of sequenced leaves, published or not.
func (l *Log) IntegratedSize(ctx context.Context) (uint64, error) {
	return l.reader.IntegratedSize(ctx)
}

// Ready reports whether the log has published a checkpoint.
func (l *Log) Ready(ctx context.Context) error {
	_, _, err := l.Checkpoint(ctx)
	return err
}

// ReadLeaf returns the canonical record bytes of the leaf at index within a
// tree of the given size.
func (l *Log) ReadLeaf(ctx context.Context, leaf, treeSize uint64) ([]byte, error) {
	b, err := client.GetEntryBundle(ctx, l.reader.ReadEntryBundle, leaf/layout.EntryBundleWidth, treeSize)
	if err != nil {
		return nil, fmt.Errorf("entry bundle for leaf %d: %w", leaf, err)
	}
	i := leaf % layout.EntryBundleWidth
	if i >= uint64(len(b.Entries)) {
		return nil, fmt.Errorf("entry bundle for leaf %d is short", leaf)
	}
	return b.Entries[i], nil
}

// proofBuilder builds proofs against a tree size from the log's own tiles.
func (l *Log) proofBuilder(ctx context.Context, size uint64) (*client.ProofBuilder, error) {
	pb, err := client.NewProofBuilder(ctx, size, l.reader.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("proof builder: %w", err)
	}
	return pb, nil
}

// LookupMany returns the leaf index of each id already in the log.
func (l *Log) LookupMany(ids []string) (map[string]uint64, error) {
	return l.idx.lookup(ids)
}
