package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// index maps record ids to leaf indices. It is the log's permanent
// deduplication key (JetStream's duplicate window is only minutes long) and
// what /v1/proof/{record_id} looks records up by.
//
// Next to each leaf index it keeps the leaf's RFC 6962 hash, so that a
// record arriving under an id the log already holds can be told apart: the
// same bytes are a duplicate (a retry), different bytes are a conflict
// (someone else's record under that id), and a conflict must never be
// answered as if it were stored.
//
// It is derived state: every entry of the log carries its record id, so the
// index can always be rebuilt from the log. The high-water mark says up to
// which leaf it is known complete; Open re-reads the log past it, which is
// how a crash between sequencing and indexing is repaired.
//
// The store is Pebble, an LSM: every record is put once, on the signer's
// serial commit path, and with random ids a B+tree (bbolt, before) rewrote
// most of its leaf pages in each commit once it outgrew a batch — 14–20 µs
// a record and a fifth of the server's CPU (bench/RESULTS.md, 2026-12-03
// 13:48). Pebble appends a batch to its write-ahead log and memtable:
// about 4 µs of CPU a record, its compactions included, at any size
// (15:15). Its lookups cost more than a B+tree's and are rare: the Bloom
// filter in front clears new ids, so only duplicates, conflicts, the
// filter's false positives and proofs reach it (and every lookup while the
// filter loads at start).
type index struct {
	db *pebble.DB
	// absent answers for ids certainly not held, without a search.
	absent idFilter
	// hw is the committed high-water mark; guarded by absent.putMu, which
	// every put holds.
	hw uint64
}

// Keys: a record id under recordPrefix, the high-water mark under its own
// key outside that range (the filter's scan reads the prefix only).
const recordPrefix = 'r'

var (
	keyHighWater = []byte("m/high_water")
	recordsLower = []byte{recordPrefix}
	recordsUpper = []byte{recordPrefix + 1}
)

func recordKey(id string) []byte {
	k := make([]byte, 1, 1+len(id))
	k[0] = recordPrefix
	return append(k, id...)
}

// held is what the index knows of the leaf holding a record id.
type held struct {
	leaf uint64
	// hash is the leaf's RFC 6962 hash.
	hash [sha256.Size]byte
}

// leafHash is the RFC 6962 leaf hash of a leaf's bytes: the same value
// the Merkle tree commits to, so what the index compares is what the log
// proves.
func leafHash(data []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// holds reports whether data is the leaf h describes: an id sent again
// with these bytes is a duplicate, with other bytes a conflict.
func (h held) holds(data []byte) bool { return h.hash == leafHash(data) }

// heldSize is an entry's value: the leaf index (big-endian) and the hash.
const heldSize = 8 + sha256.Size

func (h held) encode() []byte {
	v := make([]byte, 8, heldSize)
	binary.BigEndian.PutUint64(v, h.leaf)
	return append(v, h.hash[:]...)
}

func decodeHeld(v []byte) held {
	h := held{leaf: binary.BigEndian.Uint64(v[:8])}
	copy(h.hash[:], v[8:heldSize])
	return h
}

// openIndex opens (or creates) the index in the directory dir.
func openIndex(dir string, logger *slog.Logger) (*index, error) {
	opts := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{logger.With("component", "record-index")},
		// Record ids are random, so every memtable flush overlaps every
		// table below it and compactions rewrite much of the index. A
		// memtable of 32 MiB (Pebble's default is 4 MiB) holds ~400k
		// entries: eight times fewer flushes and L0 files to compact,
		// which took the index's CPU per record, 4M random ids in, from
		// 7.0–7.5 µs to 5.0–5.4 µs (BenchmarkIndexPut, bench/RESULTS.md
		// 2026-12-03 19:50–20:00). Memory: at most two memtables, 64 MiB.
		MemTableSize: 32 << 20,
	}
	opts.EnsureDefaults()
	// Bloom filters in the tables: a lookup of an id the index does not
	// hold (a false positive of the filter in front) skips most tables.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	x := &index{db: db}
	hw, err := x.highWater()
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("index high-water: %w", err)
	}
	x.hw = hw
	x.absent.start(x.scan, hw)
	return x, nil
}

func (x *index) close() error {
	x.absent.close()
	return x.db.Close()
}

// scan calls add with every id the index holds, in key order, until add
// returns false. It reads one consistent view of the index: what was
// committed when it was called.
func (x *index) scan(add func(id []byte) bool) error {
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: recordsLower, UpperBound: recordsUpper})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !add(it.Key()[1:]) {
			break
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// find returns what the index holds for id, if anything.
func (x *index) find(id string) (held, bool, error) {
	v, closer, err := x.db.Get(recordKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return held{}, false, nil
	}
	if err != nil {
		return held{}, false, err
	}
	defer closer.Close()
	if len(v) != heldSize {
		return held{}, false, fmt.Errorf("index entry of %q is %d bytes, want %d", id, len(v), heldSize)
	}
	return decodeHeld(v), true, nil
}

// holders returns what the index holds for each id already in the log.
func (x *index) holders(ids []string) (map[string]held, error) {
	found := make(map[string]held)
	for _, id := range ids {
		if x.absent.absent(id) {
			continue
		}
		h, ok, err := x.find(id)
		if err != nil {
			return nil, err
		}
		if ok {
			found[id] = h
		}
	}
	return found, nil
}

// lookup returns the leaf index of each id that is already in the log.
func (x *index) lookup(ids []string) (map[string]uint64, error) {
	h, err := x.holders(ids)
	if err != nil {
		return nil, err
	}
	found := make(map[string]uint64, len(h))
	for id, v := range h {
		found[id] = v.leaf
	}
	return found, nil
}

func (x *index) get(id string) (uint64, bool, error) {
	m, err := x.lookup([]string{id})
	if err != nil {
		return 0, false, err
	}
	v, ok := m[id]
	return v, ok, nil
}

// highWater is the number of leaves the index is known to cover.
func (x *index) highWater() (uint64, error) {
	v, closer, err := x.db.Get(keyHighWater)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("high-water mark is %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// put records ids at their leaves and raises the high-water mark to hw if
// it is higher, in one durable (fsynced) batch. An id already present
// keeps its first leaf: the first leaf is the one proofs point at.
func (x *index) put(entries map[string]held, hw uint64) error {
	if len(entries) == 0 && hw == 0 {
		return nil
	}
	x.absent.putMu.Lock()
	defer x.absent.putMu.Unlock()
	b := x.db.NewBatch()
	defer b.Close()
	// An id the filter knows is new is put without looking for it first;
	// the filter learns the ids before they commit, so a lookup never
	// finds them committed and unknown to it.
	news := make(map[string]bool, len(entries))
	for id, h := range entries {
		if id == "" {
			return errors.New("empty record id")
		}
		if !x.absent.absent(id) {
			_, ok, err := x.find(id)
			if err != nil {
				return fmt.Errorf("index lookup: %w", err)
			}
			if ok {
				continue
			}
		}
		news[id] = true
		if err := b.Set(recordKey(id), h.encode(), nil); err != nil {
			return err
		}
	}
	if hw > x.hw {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], hw)
		if err := b.Set(keyHighWater, v[:], nil); err != nil {
			return err
		}
	}
	if b.Empty() {
		return nil
	}
	x.absent.add(news)
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	x.hw = max(x.hw, hw)
	return nil
}

// pebbleLogger hands Pebble's messages to slog. Pebble's informational
// messages (flushes, compactions) are debug-level here; its Fatalf is for
// a store it cannot go on with, so it panics after logging rather than
// returning.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }

func (p pebbleLogger) Errorf(format string, args ...any) { p.l.Error(fmt.Sprintf(format, args...)) }

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg)
	panic("record index: " + msg)
}
