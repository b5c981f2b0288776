package mcphook

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/proofline/proofline/schemas"
)

func rec(i int) pending {
	return pending{rec: &schemas.CallRecord{RecordID: fmt.Sprint(i)}}
}

// sealed collects what the sealer was handed.
type sealed struct {
	mu  sync.Mutex
	ids []string
}

func (s *sealed) add(p pending) {
	s.mu.Lock()
	s.ids = append(s.ids, p.rec.RecordID)
	s.mu.Unlock()
}

func (s *sealed) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// waitFor polls cond; a deadline far above anything expected keeps a slow
// machine from failing the test, and a broken queue from hanging it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
	}
}

func TestSealqOrderAndClose(t *testing.T) {
	q := newSealq()
	var got sealed
	go q.run(got.add)
	const n = 10_000
	queued := 0
	var self []string
	for i := range n {
		if q.put(rec(i)) {
			queued++
		} else {
			self = append(self, fmt.Sprint(i)) // full: the call seals it
		}
	}
	q.close()
	<-q.done
	if got.len()+len(self) != n || got.len() != queued {
		t.Fatalf("sealed %d + by the caller %d, want %d (%d queued)", got.len(), len(self), n, queued)
	}
	prev := -1
	for _, id := range got.ids {
		var i int
		fmt.Sscan(id, &i)
		if i <= prev {
			t.Fatalf("record %d sealed after %d: order lost", i, prev)
		}
		prev = i
	}
	if q.put(rec(n)) {
		t.Error("put after close queued a record nobody will seal")
	}
}

// After a quiet spell the sealer parks; the next record must wake it.
func TestSealqWakesAfterParking(t *testing.T) {
	q := newSealq()
	var got sealed
	go q.run(got.add)
	defer func() { q.close(); <-q.done }()
	for round := range 3 {
		waitFor(t, "the sealer to park", func() bool {
			q.mu.Lock()
			defer q.mu.Unlock()
			return q.parked
		})
		if !q.put(rec(round)) {
			t.Fatal("put refused")
		}
		waitFor(t, "the record to be sealed", func() bool { return got.len() == round+1 })
	}
}

// Concurrent producers: every record is sealed exactly once.
func TestSealqConcurrentPut(t *testing.T) {
	q := newSealq()
	var got sealed
	go q.run(got.add)
	var wg sync.WaitGroup
	var mu sync.Mutex
	self := 0
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				if !q.put(rec(w*10_000 + i)) {
					mu.Lock()
					self++
					mu.Unlock()
				}
				if i%500 == 0 {
					time.Sleep(2 * idleAfter / 3) // let it poll, and sometimes park
				}
			}
		})
	}
	wg.Wait()
	q.close()
	<-q.done
	seen := map[string]bool{}
	for _, id := range got.ids {
		if seen[id] {
			t.Fatalf("record %s sealed twice", id)
		}
		seen[id] = true
	}
	if len(seen)+self != 8*2000 {
		t.Fatalf("sealed %d + by callers %d, want %d", len(seen), self, 8*2000)
	}
}
