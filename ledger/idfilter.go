package ledger

import (
	"sync"
	"sync/atomic"

	"github.com/bits-and-blooms/bloom/v3"
)

// idFilter answers "is this record id certainly not in the index?" from
// memory, so that a new record (nearly every record: ids are random) costs
// no search of the index. Every record is looked up twice (ingest's
// conflict check and the signer's dedup) and, when indexed, once more; the
// three were ~18% of the server's CPU at 30k records/s with the bbolt
// index (bench/RESULTS.md, 2026-12-03 07:20), and a Pebble lookup costs
// more than a bbolt one (~15 µs against 1–2, 14:26).
//
// It is a Bloom filter (bits-and-blooms/bloom: a well-kept implementation
// of a structure whose subtle part is the sizing): "absent" is certain,
// "maybe" falls back to the index. Correctness never depends on it: a
// false positive costs the search it would have cost anyway, and it
// answers only once it holds every id the index holds.
//
// It is built from the index in the background when the log opens, and
// ids are added to it before their index batch commits. Until it is
// built, every lookup searches the index.
type idFilter struct {
	// putMu is held by index.put for its whole transaction, and by start
	// while it switches the filter on: a put either sees the filter and
	// adds its ids to it, or committed before the scan's snapshot.
	putMu sync.Mutex
	mu    sync.RWMutex // guards f's bits
	f     *bloom.BloomFilter
	ready atomic.Bool // f holds every id the index has committed
	stop  chan struct{}
	done  chan struct{}
}

// Filter sizing: room for twice the log's size at open (it is rebuilt at
// each open), at least minFilterIDs, at a 1% false-positive rate (9.6
// bits an id); never more than maxFilterIDs (~256 MiB). Past its room the
// false-positive rate rises and more lookups fall back to the index:
// slower, never wrong.
const (
	minFilterIDs = 4 << 20
	maxFilterIDs = 220 << 20
	filterFP     = 0.01
	// filterScanChunk ids are added per hold of the write lock while the
	// filter is built, so lookups are not held up for the whole scan.
	filterScanChunk = 4096
)

func filterCapacity(size uint64) uint {
	n := max(2*size, minFilterIDs)
	return uint(min(n, maxFilterIDs))
}

// start builds the filter in the background from scan, which reads every
// id the index holds as of its call. size is the number of ids the index
// is expected to hold (its high-water mark).
func (x *idFilter) start(scan func(add func(id []byte) bool) error, size uint64) {
	x.stop, x.done = make(chan struct{}), make(chan struct{})
	f := bloom.NewWithEstimates(filterCapacity(size), filterFP)
	x.putMu.Lock()
	x.mu.Lock()
	x.f = f
	x.mu.Unlock()
	x.putMu.Unlock()
	go func() {
		defer close(x.done)
		if x.load(scan) {
			x.ready.Store(true)
		}
	}()
}

// load adds every id the index holds to the filter; false when stopped or
// when the index could not be read (the filter then never answers).
func (x *idFilter) load(scan func(add func(id []byte) bool) error) bool {
	stopped := false
	n := 0
	x.mu.Lock()
	err := scan(func(id []byte) bool {
		if n++; n%filterScanChunk == 0 {
			x.mu.Unlock()
			select {
			case <-x.stop:
				stopped = true
			default:
			}
			x.mu.Lock()
			if stopped {
				return false
			}
		}
		x.f.Add(id)
		return true
	})
	x.mu.Unlock()
	return err == nil && !stopped
}

// close stops a build under way; the filter answers nothing afterwards.
func (x *idFilter) close() {
	x.ready.Store(false)
	if x.stop == nil {
		return
	}
	close(x.stop)
	<-x.done
}

// absent reports whether id is certainly not in the index.
func (x *idFilter) absent(id string) bool {
	if !x.ready.Load() {
		return false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return !x.f.TestString(id)
}

// add records ids about to be committed to the index. Called with putMu
// held.
func (x *idFilter) add(ids map[string]bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.f == nil {
		return
	}
	for id := range ids {
		x.f.AddString(id)
	}
}
