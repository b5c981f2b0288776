package mcphook

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// Limits are the hook's operational limits.
type Limits struct {
	// PrincipalRate and PrincipalBurst limit each caller's calls per
	// second across tools (0: unlimited).
	PrincipalRate  float64
	PrincipalBurst int
	// ToolRate and ToolBurst limit each tool's calls per second across
	// callers, unless the tool sets its own (0: unlimited).
	ToolRate  float64
	ToolBurst int
	// DefaultMaxConcurrent caps calls running at once per tool, unless
	// the tool sets its own (0: uncapped).
	DefaultMaxConcurrent int
	// MaxWait is how long a call waits for a concurrency slot before it
	// is refused (default 1 s).
	MaxWait time.Duration
	// DefaultTimeout bounds a call, unless the tool sets its own (0: none).
	DefaultTimeout time.Duration
	// Breaker puts a circuit breaker in front of every tool (or of each
	// ToolConfig.Service), unless the tool sets its own; nil: none.
	Breaker *BreakerConfig
}

// limiterIdle is how long an idle caller's rate state is kept: long
// enough that a bucket refills completely, bounded so that many distinct
// callers cannot grow memory without end.
const (
	limiterIdle    = 10 * time.Minute
	limiterEntries = 100_000
)

type limiter struct {
	cfg   Limits
	tools map[string]ToolConfig

	principals *expirable.LRU[string, *rate.Limiter]

	mu       sync.Mutex
	toolRate map[string]*rate.Limiter
	toolSem  map[string]*semaphore.Weighted
}

func newLimiter(cfg Limits, tools map[string]ToolConfig) *limiter {
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Second
	}
	return &limiter{
		cfg: cfg, tools: tools,
		principals: expirable.NewLRU[string, *rate.Limiter](limiterEntries, nil, limiterIdle),
		toolRate:   map[string]*rate.Limiter{}, toolSem: map[string]*semaphore.Weighted{},
	}
}

// allow takes one token from the caller's and the tool's buckets, or
// none: a call refused by the tool's limit does not spend the caller's.
// It returns how long until a retry could pass and which limit refused.
func (l *limiter) allow(principal, tool string) (ok bool, retryAfter time.Duration, which string) {
	var reserved []*rate.Reservation
	cancel := func() {
		for _, r := range reserved {
			r.Cancel()
		}
	}
	if l.cfg.PrincipalRate > 0 {
		lim, found := l.principals.Get(principal)
		if !found {
			lim = rate.NewLimiter(rate.Limit(l.cfg.PrincipalRate), max(1, l.cfg.PrincipalBurst))
			l.principals.Add(principal, lim)
		}
		r := lim.Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			return false, d, "principal"
		}
		reserved = append(reserved, r)
	}
	if lim := l.toolLimiter(tool); lim != nil {
		r := lim.Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			cancel()
			return false, d, "tool"
		}
	}
	return true, 0, ""
}

func (l *limiter) toolLimiter(tool string) *rate.Limiter {
	tc := l.tools[tool]
	r, b := tc.Rate, tc.Burst
	if r <= 0 {
		r, b = l.cfg.ToolRate, l.cfg.ToolBurst
	}
	if r <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.toolRate[tool]
	if !ok {
		// Tools are the server's own, a small fixed set: no eviction.
		lim = rate.NewLimiter(rate.Limit(r), max(1, b))
		l.toolRate[tool] = lim
	}
	return lim
}

// acquire takes a concurrency slot for tool, waiting at most MaxWait.
func (l *limiter) acquire(ctx context.Context, tool string) (release func(), err error) {
	n := l.tools[tool].MaxConcurrent
	if n <= 0 {
		n = l.cfg.DefaultMaxConcurrent
	}
	if n <= 0 {
		return func() {}, nil
	}
	l.mu.Lock()
	sem, ok := l.toolSem[tool]
	if !ok {
		sem = semaphore.NewWeighted(int64(n))
		l.toolSem[tool] = sem
	}
	l.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, l.cfg.MaxWait)
	defer cancel()
	if err := sem.Acquire(wctx, 1); err != nil {
		return nil, fmt.Errorf("%s is at its limit of %d concurrent calls; waited %s", tool, n, l.cfg.MaxWait)
	}
	return func() { sem.Release(1) }, nil
}
