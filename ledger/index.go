package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// index maps record ids to leaf indices. It is the log's permanent
// deduplication key (JetStream's duplicate window is only minutes long) and
// what /v1/proof/{record_id} looks records up by.
//
// It is derived state: every entry of the log carries its record id, so the
// index can always be rebuilt from the log. The high-water mark says up to
// which leaf it is known complete; Open re-reads the log past it, which is
// how a crash between sequencing and indexing is repaired.
type index struct {
	db *bolt.DB
}

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	keyHighWater  = []byte("high_water")
)

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
	return &index{db: db}, nil
}

func (x *index) close() error { return x.db.Close() }

// lookup returns the leaf index of each id that is already in the log.
func (x *index) lookup(ids []string) (map[string]uint64, error) {
	found := make(map[string]uint64)
	err := x.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for _, id := range ids {
			if v := b.Get([]byte(id)); v != nil {
				found[id] = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	return found, err
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

// put records ids at their leaf indices and raises the high-water mark to
// hw if it is higher, in one durable transaction. An id already present
// keeps its first index: the first leaf is the one proofs point at.
func (x *index) put(entries map[string]uint64, hw uint64) error {
	if len(entries) == 0 && hw == 0 {
		return nil
	}
	return x.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for id, leaf := range entries {
			if id == "" {
				return errors.New("empty record id")
			}
			if b.Get([]byte(id)) != nil {
				continue
			}
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], leaf)
			if err := b.Put([]byte(id), v[:]); err != nil {
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
