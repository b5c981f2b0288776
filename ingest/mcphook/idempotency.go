package mcphook

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// idempotency remembers the first result of each write-tool call by
// (caller, tool, idempotency key), so that a retried write — the agent
// timed out, the network dropped the answer — returns what the first did
// instead of acting twice. Calls with the same key at the same time wait
// for the first. It is per process and in memory: a server restart, or a
// retry that reaches another replica, runs the tool again; tools whose
// writes must be exactly-once across those need their own store.
type idempotency struct {
	mu      sync.Mutex
	entries *expirable.LRU[string, *idemEntry]
}

type idemEntry struct {
	done chan struct{}
	// result is the first result as JSON: the SDK fills fields of a
	// result after the middleware returns it, so a replay decodes a fresh
	// copy rather than sharing the first.
	result []byte
	err    error
}

func newIdempotency(ttl time.Duration, n int) *idempotency {
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	if n <= 0 {
		n = 100_000
	}
	return &idempotency{entries: expirable.NewLRU[string, *idemEntry](n, nil, ttl)}
}

// do runs fn once per key. replay is true when the result is the
// remembered one of an earlier call. A call that failed with an error is
// forgotten, so a retry runs again.
func (i *idempotency) do(ctx context.Context, key string, fn func(context.Context) (mcp.Result, error)) (res mcp.Result, replay bool, err error) {
	i.mu.Lock()
	if e, ok := i.entries.Get(key); ok {
		i.mu.Unlock()
		select {
		case <-e.done:
			if e.err != nil {
				return nil, true, e.err
			}
			var r mcp.CallToolResult
			if err := json.Unmarshal(e.result, &r); err != nil {
				return nil, true, fmt.Errorf("replay the first result: %w", err)
			}
			return &r, true, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	e := &idemEntry{done: make(chan struct{})}
	i.entries.Add(key, e)
	i.mu.Unlock()

	res, err = fn(ctx)
	if err == nil {
		e.result, err = json.Marshal(res)
	}
	e.err = err
	if err != nil {
		i.mu.Lock()
		i.entries.Remove(key)
		i.mu.Unlock()
	}
	close(e.done)
	return res, false, err
}
