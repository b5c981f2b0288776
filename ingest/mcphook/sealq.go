package mcphook

import (
	"sync"
	"time"
)

// sealq hands records from the calls to the sealer goroutine without
// waking it on every call.
//
// Why not a channel: a send to a goroutine parked on a channel readies it,
// and the runtime then wakes an idle thread for it (a futex call). On a
// small or shared machine that wake was most of the hook's tail latency
// (p99 ≈ 20 µs of the call's ≈ 50 µs). Here the sealer, while records keep
// coming, polls the queue every pollEvery instead of parking, so a call
// only appends under a mutex; it parks, and is woken by the next call,
// only after idleAfter without records. Records wait at most pollEvery
// longer to be sealed, which nothing on the call's path sees.
type sealq struct {
	mu     sync.Mutex
	items  []pending
	spare  []pending // the previous batch's slice, reused
	closed bool
	parked bool          // the sealer waits on wake
	wake   chan struct{} // capacity 1
	done   chan struct{} // closed when the sealer has finished
}

const (
	// sealQueue bounds the records waiting for the sealer; beyond it a
	// call seals its own record.
	sealQueue = 4096
	pollEvery = time.Millisecond
	idleAfter = 100 * time.Millisecond
)

func newSealq() *sealq {
	return &sealq{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// put queues p and reports whether it did; false when the queue is full
// or closed, and the caller must seal p itself.
func (q *sealq) put(p pending) bool {
	q.mu.Lock()
	if q.closed || len(q.items) >= sealQueue {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, p)
	wake := q.parked
	q.parked = false
	q.mu.Unlock()
	if wake {
		q.signal()
	}
	return true
}

func (q *sealq) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close stops taking records; the sealer finishes the queued ones and
// closes done.
func (q *sealq) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// run calls seal for every queued record, in order, until close.
func (q *sealq) run(seal func(pending)) {
	defer close(q.done)
	idle := time.Duration(0)
	for {
		q.mu.Lock()
		batch := q.items
		q.items = q.spare[:0]
		closed := q.closed
		if len(batch) == 0 && !closed && idle >= idleAfter {
			q.parked = true
		}
		parked := q.parked
		q.mu.Unlock()

		for i := range batch {
			seal(batch[i])
			batch[i] = pending{} // let the record be collected
		}
		q.mu.Lock()
		q.spare = batch[:0]
		q.mu.Unlock()

		switch {
		case len(batch) > 0:
			idle = 0
		case closed:
			return
		case parked:
			<-q.wake
			idle = 0
		default:
			time.Sleep(pollEvery)
			idle += pollEvery
		}
	}
}
