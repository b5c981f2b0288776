package exporters

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Cursor is a sink's durable position in the log: every leaf below Next
// has been acknowledged by the sink (or dead-lettered), and the sink holds
// the anchor of size AnchorSize.
type Cursor struct {
	Next       uint64    `json:"next_leaf"`
	AnchorSize uint64    `json:"anchor_size"`
	Updated    time.Time `json:"updated"`
	// Seq orders a StateDir's cursor writes: the one with the highest
	// wins, whichever file holds it (a replay moves Next back, so Next
	// cannot order them).
	Seq uint64 `json:"seq,omitempty"`
}

// Status is what `proofline export status` shows of a sink; the runner
// rewrites it as it goes (not fsynced: it is a view, the cursor is the
// truth).
type Status struct {
	Sink         string    `json:"sink"`
	Origin       string    `json:"log_origin"`
	Cursor       uint64    `json:"cursor"`
	TreeSize     uint64    `json:"tree_size"`
	LagLeaves    uint64    `json:"lag_leaves"`
	LagSeconds   float64   `json:"lag_seconds"`
	Breaker      string    `json:"breaker"`
	Delivered    uint64    `json:"delivered"`
	DeadLettered uint64    `json:"dead_lettered"`
	LastError    string    `json:"last_error,omitempty"`
	Updated      time.Time `json:"updated"`
}

// DeadLetter is one event a sink refused for good.
type DeadLetter struct {
	Time      time.Time `json:"time"`
	Sink      string    `json:"sink"`
	LeafIndex uint64    `json:"leaf_index"`
	RecordID  string    `json:"record_id"`
	Reason    string    `json:"reason"`
}

// State is where a runner keeps what must outlive it: each sink's cursor,
// status, dead letters and pending replay, and the newest checkpoint it
// trusts. Two implementations: StateDir (files in a local directory) and
// kvstate (a JetStream key-value bucket, so that an exporter can move
// hosts).
//
// Hold's contract: it blocks until this runner alone may deliver to sink
// (or ctx ends), and returns a context that ends when it no longer may
// (another runner took the sink over) and a release func. Between Hold
// and release, SaveCursor succeeds only while the hold lasts; once it is
// lost SaveCursor returns an error wrapping ErrLeaseLost, so a runner
// that lost its sink can never move the cursor of the one that took it.
type State interface {
	Hold(ctx context.Context, sink string) (context.Context, func(), error)
	LoadCursor(sink string) (Cursor, error)
	SaveCursor(sink string, c Cursor) error
	LoadStatus(sink string) (Status, error)
	SaveStatus(s Status) error
	AppendDeadLetters(sink string, dls []DeadLetter) error
	DeadLetters(sink string) ([]DeadLetter, error)
	RequestReplay(sink string, from uint64) error
	TakeReplay(sink string) (uint64, bool, error)
	SaveTrusted(note []byte) error
	LoadTrusted() ([]byte, error)
}

// ErrLeaseLost: another runner holds the sink now.
var ErrLeaseLost = errors.New("exporters: another runner took the sink over")

// StateDir holds the cursors, statuses, dead letters and replay requests
// of the sinks of one exporter process. Only one process may use it at a
// time (an exclusive lock), so two exporters cannot both move a cursor.
type StateDir struct {
	dir  string
	lock *os.File

	mu       sync.Mutex
	journals map[string]*cursorJournal
}

// cursorJournal is a sink's cursor log: each SaveCursor appends one line
// and fsyncs it — one fsync per batch, where writing a new file and
// renaming it over the old took two (the file and its directory), a third
// of the file sink's per-batch cost. Every journalCompact writes the
// cursor to the snapshot file (atomically, as before) and empties the
// journal.
type cursorJournal struct {
	mu      sync.Mutex
	f       *os.File
	seq     uint64
	entries int
}

// journalCompact is how many cursor writes a journal holds before it is
// folded into the snapshot: a few hundred kilobytes at most.
const journalCompact = 4096

// OpenStateDir creates (0700) and locks dir.
func OpenStateDir(dir string) (*StateDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("exporter state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("exporter state dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("exporter state dir %s is in use by another exporter process: %w", dir, err)
	}
	return &StateDir{dir: dir, lock: f, journals: map[string]*cursorJournal{}}, nil
}

// Close closes the cursor journals and releases the lock.
func (d *StateDir) Close() error {
	d.mu.Lock()
	var errs []error
	for _, j := range d.journals {
		if j.f != nil {
			errs = append(errs, j.f.Close())
		}
	}
	d.journals = map[string]*cursorJournal{}
	d.mu.Unlock()
	return errors.Join(append(errs, d.lock.Close())...)
}

// Hold: the directory's lock, taken by OpenStateDir, already makes this
// process the only one delivering to its sinks.
func (d *StateDir) Hold(ctx context.Context, _ string) (context.Context, func(), error) {
	return ctx, func() {}, ctx.Err()
}

// LoadCursor returns the sink's cursor (zero for a new sink).
func (d *StateDir) LoadCursor(sink string) (Cursor, error) { return LoadCursor(d.dir, sink) }

// LoadStatus reads a sink's last status.
func (d *StateDir) LoadStatus(sink string) (Status, error) { return LoadStatus(d.dir, sink) }

// DeadLetters returns a sink's dead letters, oldest first.
func (d *StateDir) DeadLetters(sink string) ([]DeadLetter, error) {
	return ReadDeadLetters(d.dir, sink)
}

// RequestReplay asks the sink's runner to move its cursor back to from.
func (d *StateDir) RequestReplay(sink string, from uint64) error {
	return RequestReplay(d.dir, sink, from)
}

// Dir is the directory.
func (d *StateDir) Dir() string { return d.dir }

func (d *StateDir) path(sink, kind string) string { return filepath.Join(d.dir, sink+"."+kind) }

// LoadCursor returns the sink's cursor (zero for a new sink): of the
// snapshot file and the journal's lines, the one written last (highest
// Seq). A line a crash tore is not JSON and is passed over; a snapshot
// of an earlier version (no Seq) is read as Seq 0.
func LoadCursor(dir, sink string) (Cursor, error) {
	var c Cursor
	b, err := os.ReadFile(filepath.Join(dir, sink+".cursor"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return c, err
	default:
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("cursor of sink %s: %w", sink, err)
		}
	}
	jb, err := os.ReadFile(filepath.Join(dir, sink+".cursor.journal"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return c, err
	}
	for _, line := range bytes.Split(jb, []byte("\n")) {
		var e Cursor
		if len(line) == 0 || json.Unmarshal(line, &e) != nil {
			continue
		}
		if e.Seq > c.Seq {
			c = e
		}
	}
	return c, nil
}

// endLine ends a journal that a crash left in the middle of a line, so
// that the next line is not glued to the torn one.
func endLine(path string, f *os.File) error {
	r, err := os.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	fi, err := r.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := r.ReadAt(last, fi.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	_, err = f.Write([]byte{'\n'})
	return err
}

// CursorSinks lists the sinks that have a cursor in dir (a snapshot, a
// journal, or both).
func CursorSinks(dir string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, suffix := range []string{".cursor", ".cursor.journal"} {
		names, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if sink := strings.TrimSuffix(filepath.Base(n), suffix); !seen[sink] {
				seen[sink] = true
				out = append(out, sink)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// SaveCursor writes c durably: one line appended to the sink's cursor
// journal and fsynced, so a crash leaves the old or the new cursor, never
// a torn one.
func (d *StateDir) SaveCursor(sink string, c Cursor) error {
	j, err := d.journal(sink)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	c.Seq = j.seq
	if j.entries >= journalCompact {
		// Fold into the snapshot, then empty the journal; a crash in
		// between leaves journal lines older than the snapshot, which
		// LoadCursor passes over by their Seq.
		b, _ := json.Marshal(c)
		if err := writeAtomic(d.path(sink, "cursor"), b, true); err != nil {
			return err
		}
		if err := j.f.Truncate(0); err != nil {
			return fmt.Errorf("cursor journal of sink %s: %w", sink, err)
		}
		j.entries = 0
		return j.f.Sync()
	}
	b, _ := json.Marshal(c)
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("cursor journal of sink %s: %w", sink, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("cursor journal of sink %s: %w", sink, err)
	}
	j.entries++
	return nil
}

// journal opens a sink's cursor journal on first use, continuing the
// sequence of what is stored.
func (d *StateDir) journal(sink string) (*cursorJournal, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if j, ok := d.journals[sink]; ok {
		return j, nil
	}
	cur, err := LoadCursor(d.dir, sink)
	if err != nil {
		return nil, err
	}
	path := d.path(sink, "cursor.journal")
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		// A new file's name must be durable before its lines are.
		if err := SyncDir(d.dir); err != nil {
			f.Close()
			return nil, err
		}
	} else if err := endLine(path, f); err != nil {
		f.Close()
		return nil, err
	}
	j := &cursorJournal{f: f, seq: cur.Seq}
	d.journals[sink] = j
	return j, nil
}

// SaveStatus writes the sink's status for readers (not fsynced).
func (d *StateDir) SaveStatus(s Status) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return writeAtomic(d.path(s.Sink, "status"), b, false)
}

// LoadStatus reads a sink's last status.
func LoadStatus(dir, sink string) (Status, error) {
	var s Status
	b, err := os.ReadFile(filepath.Join(dir, sink+".status"))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// AppendDeadLetters appends to the sink's dead-letter file and fsyncs it
// before the runner moves the cursor past the events.
func (d *StateDir) AppendDeadLetters(sink string, dls []DeadLetter) error {
	f, err := os.OpenFile(d.path(sink, "deadletter.ndjson"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, dl := range dls {
		if err := enc.Encode(dl); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadDeadLetters returns a sink's dead letters, oldest first.
func ReadDeadLetters(dir, sink string) ([]DeadLetter, error) {
	f, err := os.Open(filepath.Join(dir, sink+".deadletter.ndjson"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []DeadLetter
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var dl DeadLetter
		if err := json.Unmarshal(sc.Bytes(), &dl); err != nil {
			// A torn last line after a crash: the cursor did not move
			// past it, so the event will be dead-lettered again.
			continue
		}
		out = append(out, dl)
	}
	return out, sc.Err()
}

// RequestReplay asks the runner of sink to move its cursor back to leaf
// from. The runner applies it at its next step (or at start), so replay
// works whether or not the exporter is running.
func RequestReplay(dir, sink string, from uint64) error {
	b, _ := json.Marshal(struct {
		From uint64 `json:"from"`
	}{from})
	return writeAtomic(filepath.Join(dir, sink+".replay"), b, true)
}

// TakeReplay returns a pending replay request and removes it.
func (d *StateDir) TakeReplay(sink string) (uint64, bool, error) {
	p := d.path(sink, "replay")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var r struct {
		From uint64 `json:"from"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, false, fmt.Errorf("replay request %s: %w", p, err)
	}
	return r.From, true, os.Remove(p)
}

// SaveTrusted records the newest checkpoint the source proved consistent,
// so a restarted exporter detects a log rolled back behind it.
func (d *StateDir) SaveTrusted(note []byte) error {
	return writeAtomic(filepath.Join(d.dir, "checkpoint"), note, true)
}

// LoadTrusted returns the checkpoint SaveTrusted wrote, or nil.
func (d *StateDir) LoadTrusted() ([]byte, error) { return LoadTrusted(d.dir) }

// LoadTrusted reads the trusted checkpoint of the state directory dir
// without taking its lock (for status readers).
func LoadTrusted(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func writeAtomic(path string, b []byte, durable bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making the names created or renamed in
// it durable (the file sinks' rotations, the state directory's files).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
