package ratelimit

import (
	"testing"
	"time"
)

func TestTake(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	l := New(10, 20)
	l.now = func() time.Time { return clock }

	if ok, _, _ := l.Take("gw-1", 20); !ok {
		t.Fatal("a full burst must be allowed")
	}
	ok, wait, tooBig := l.Take("gw-1", 5)
	if ok || tooBig {
		t.Fatalf("over the rate: ok=%v tooBig=%v, want refused", ok, tooBig)
	}
	if wait != 500*time.Millisecond {
		t.Fatalf("wait = %v, want 500ms (5 units at 10/s)", wait)
	}
	if got := RetryAfterSeconds(wait); got != 1 {
		t.Fatalf("Retry-After = %d, want 1", got)
	}
	if ok, _, _ := l.Take("gw-2", 20); !ok {
		t.Fatal("another principal has its own bucket")
	}
	if _, _, tooBig := l.Take("gw-3", 21); !tooBig {
		t.Fatal("more than the burst can never pass")
	}
	clock = clock.Add(500 * time.Millisecond)
	if ok, _, _ := l.Take("gw-1", 5); !ok {
		t.Fatal("after the wait the same request must pass (a refused one must not have consumed tokens)")
	}
	if ok, _, _ := New(0, 0).Take("x", 1_000_000); !ok {
		t.Fatal("rate 0 disables limiting")
	}
}
