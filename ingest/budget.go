package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"
)

// errOverBudget means the process's decode budget stayed taken for longer
// than a request may wait for it: 503 with Retry-After.
var errOverBudget = errors.New("the server is decoding as many bytes as its memory budget allows")

// Budget bounds the bytes that all requests together hold while their
// bodies are decompressed and decoded, so that memory follows the budget
// and not the number of concurrent requests: 32 concurrent zstd bombs once
// took the server from 261 MB to 952 MB.
//
// A request takes its share before it allocates: its decompressor's
// window, its body buffer, and decodeFactor times its body for decoding
// the records; it gives everything back when it ends. When the body's
// size is known in advance (Content-Length, or a zstd frame that states
// its size) all of it is taken at once. Otherwise the request takes for
// each growth of its body buffer as the body arrives (the buffers it
// outgrows count until it ends: the collector may not have freed them).
//
// A request holding nothing waits up to the budget's wait for its share;
// one that already holds some waits only growthWait for more, then gives
// up (503 + Retry-After). Requests holding part of the budget while
// waiting for the rest would otherwise wait for each other until all
// time out together, as 64 bombs did when each could wait. A request
// that alone needs more than the whole budget takes all of it and runs
// alone.
type Budget struct {
	sem  *semaphore.Weighted
	size int64
	wait time.Duration
}

// decodeFactor is how many bytes decoding holds per body byte: 16 MiB of
// NDJSON records (~440 bytes each) held 94 MB once decoded and
// canonicalized (the records, their canonical bytes, the messages).
const decodeFactor = 6

// NewBudget makes a budget of size bytes; requests wait at most wait for
// their share (2s when zero).
func NewBudget(size int64, wait time.Duration) (*Budget, error) {
	if size < MinDecodeBudget {
		return nil, fmt.Errorf("decode budget %d bytes: at least %d (64 MiB)", size, int64(MinDecodeBudget))
	}
	if wait <= 0 {
		wait = 2 * time.Second
	}
	return &Budget{sem: semaphore.NewWeighted(size), size: size, wait: wait}, nil
}

// Size is the budget in bytes.
func (b *Budget) Size() int64 { return b.size }

// growthWait bounds how long a request that holds part of the budget
// waits for more.
const growthWait = 100 * time.Millisecond

// charge is what one request holds of the budget.
type charge struct {
	b        *Budget
	deadline time.Time
	held     int64
	// prepaid is what reserve took ahead for allocations still to come.
	prepaid int64
}

// start begins a request's charge; its waits together last at most the
// budget's Wait. A nil budget charges nothing.
func (b *Budget) start() *charge {
	if b == nil {
		return &charge{}
	}
	return &charge{b: b, deadline: time.Now().Add(b.wait)}
}

// reserve takes, in one wait, fixed bytes for what the request holds
// now (a decompressor) and ahead bytes for allocations still to come,
// which take then draws from without waiting again.
func (c *charge) reserve(ctx context.Context, fixed, ahead int64) error {
	if err := c.take(ctx, fixed+ahead); err != nil {
		return err
	}
	c.prepaid += ahead
	return nil
}

// take adds n bytes to the request's charge (drawing first on what was
// reserved), waiting for them until the request's deadline, or for
// growthWait when it already holds some.
func (c *charge) take(ctx context.Context, n int64) error {
	if c.b == nil {
		return nil
	}
	paid := min(n, c.prepaid)
	c.prepaid -= paid
	n -= paid
	n = min(n, c.b.size-c.held) // past the whole budget: the request runs alone
	if n <= 0 {
		return nil
	}
	if !c.b.sem.TryAcquire(n) {
		deadline := c.deadline
		if soon := time.Now().Add(growthWait); c.held > 0 && soon.Before(deadline) {
			deadline = soon
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		if err := c.b.sem.Acquire(wctx, n); err != nil {
			return errOverBudget
		}
	}
	c.held += n
	return nil
}

// release gives the request's charge back.
func (c *charge) release() {
	if c.b != nil && c.held > 0 {
		c.b.sem.Release(c.held)
		c.held = 0
	}
}

const (
	// MinDecodeBudget is the smallest decode budget: one request of the
	// default --max-body must fit without running alone.
	MinDecodeBudget = 64 << 20
	// maxDefaultDecodeBudget caps the default on a large machine.
	maxDefaultDecodeBudget = 2 << 30
)

// DefaultDecodeBudget is the budget for a machine or container with mem
// bytes of memory: an eighth of it, at most 2 GiB and at least 64 MiB
// (a 512 MiB container gets 64 MiB, a 24 GiB machine 2 GiB). The rest is
// for JetStream, the log, the span store and the Go runtime.
func DefaultDecodeBudget(mem int64) int64 {
	if mem <= 0 {
		return MinDecodeBudget
	}
	return max(MinDecodeBudget, min(mem/8, maxDefaultDecodeBudget))
}

// MemoryLimit is the memory this process may use: its cgroup v2 limit
// (memory.max of its own cgroup, as in a container) when there is one,
// else the machine's physical memory; 0 when neither can be read.
func MemoryLimit() int64 {
	phys := int64(0)
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		phys = int64(si.Totalram) * int64(si.Unit)
	}
	if lim := cgroupMemoryLimit("/"); lim > 0 && (phys == 0 || lim < phys) {
		return lim
	}
	return phys
}

// cgroupMemoryLimit reads the cgroup v2 memory.max of this process's
// cgroup under root ("/" outside tests); 0 when there is none or it is
// "max".
func cgroupMemoryLimit(root string) int64 {
	base := filepath.Join(root, "sys/fs/cgroup")
	dirs := []string{base}
	if f, err := os.Open(filepath.Join(root, "proc/self/cgroup")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// cgroup v2: "0::/path/of/the/cgroup"
			if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
				dirs = append([]string{filepath.Join(base, p)}, dirs...)
			}
		}
		f.Close()
	}
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "memory.max"))
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(raw))
		if s == "max" {
			return 0
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 0
}
