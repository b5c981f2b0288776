package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// index maps record ids to leaf indices. It is the log's permanent
// deduplication key (JetStream's duplicate window is only minutes long) and
// what /v1/proof/{record_id} looks records up by.
//
// Next to each leaf index it keeps the leaf's RFC 6962 hash, so that a
// record arriving under an id the log already holds can be told apart: the
// same bytes are a duplicate (a retry), different bytes are a conflict
// (someone else's record under that id), and a conflict must never be
// answered as if it were stored. Entries written before the hash was kept
// hold the leaf index alone; their hash is read from the log when needed.
//
// It is derived state: every entry of the log carries its record id, so the
// index can always be rebuilt from the log. The high-water mark says up to
// which leaf it is known complete; Open re-reads the log past it, which is
// how a crash between sequencing and indexing is repaired.
type index struct {
	db *bolt.DB
	// absent answers for ids certainly not held, without a search.
	absent idFilter
}

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	keyHighWater  = []byte("high_water")
)

// held is what the index knows of the leaf holding a record id.
type held struct {
	leaf uint64
	// hash is the leaf's RFC 6962 hash; hasHash is false for entries
	// indexed before hashes were kept.
	hash    [sha256.Size]byte
	hasHash bool
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

func (h held) encode() []byte {
	v := make([]byte, 8, 8+sha256.Size)
	binary.BigEndian.PutUint64(v, h.leaf)
	if h.hasHash {
		v = append(v, h.hash[:]...)
	}
	return v
}

func decodeHeld(v []byte) held {
	h := held{leaf: binary.BigEndian.Uint64(v[:8])}
	if len(v) >= 8+sha256.Size {
		copy(h.hash[:], v[8:8+sha256.Size])
		h.hasHash = true
	}
	return h
}

func openIndex(path string) (*index, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketRecords); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketMeta)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init index: %w", err)
	}
	x := &index{db: db}
	hw, err := x.highWater()
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("index high-water: %w", err)
	}
	x.absent.start(db, hw)
	return x, nil
}

func (x *index) close() error {
	x.absent.close()
	return x.db.Close()
}

// holders returns what the index holds for each id already in the log.
func (x *index) holders(ids []string) (map[string]held, error) {
	found := make(map[string]held)
	err := x.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for _, id := range ids {
			if x.absent.absent(id) {
				continue
			}
			if v := b.Get([]byte(id)); len(v) >= 8 {
				found[id] = decodeHeld(v)
			}
		}
		return nil
	})
	return found, err
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
	var hw uint64
	err := x.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyHighWater); v != nil {
			hw = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return hw, err
}

// put records ids at their leaves and raises the high-water mark to hw if
// it is higher, in one durable transaction. An id already present keeps
// its first leaf: the first leaf is the one proofs point at. An entry of
// that same leaf indexed before hashes were kept gains its hash.
func (x *index) put(entries map[string]held, hw uint64) error {
	if len(entries) == 0 && hw == 0 {
		return nil
	}
	x.absent.putMu.Lock()
	defer x.absent.putMu.Unlock()
	// In key order: consecutive puts meet the same pages. An id the
	// filter knows is new is put without looking for it first; the
	// filter learns the ids before they commit, so a lookup never finds
	// them committed and unknown to it.
	ids := make([]string, 0, len(entries))
	for id := range entries {
		if id == "" {
			return errors.New("empty record id")
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	isNew := make([]bool, len(ids))
	for i, id := range ids {
		isNew[i] = x.absent.absent(id)
	}
	x.absent.add(entries)
	return x.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for i, id := range ids {
			h := entries[id]
			if !isNew[i] {
				if v := b.Get([]byte(id)); len(v) >= 8 {
					if old := decodeHeld(v); old.hasHash || old.leaf != h.leaf || !h.hasHash {
						continue
					}
				}
			}
			if err := b.Put([]byte(id), h.encode()); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		cur := uint64(0)
		if v := m.Get(keyHighWater); v != nil {
			cur = binary.BigEndian.Uint64(v)
		}
		if hw > cur {
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], hw)
			return m.Put(keyHighWater, v[:])
		}
		return nil
	})
}
