// Package ratelimit keeps one token bucket per principal
// (golang.org/x/time/rate) and turns a refusal into the wait a client
// should be told in Retry-After.
package ratelimit

import (
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/time/rate"
)

// Limiter limits each principal to a rate of units (records) per second.
type Limiter struct {
	limit rate.Limit
	burst int
	// per holds one bucket per principal. A bucket idle for longer than
	// it takes to refill completely is the same as a new one, so idle
	// principals are forgotten after that (idleTTL): memory follows the
	// active principals, not every principal ever seen.
	mu  sync.Mutex // one bucket per principal, even on concurrent first use
	per *expirable.LRU[string, *rate.Limiter]
	now func() time.Time
}

// maxPrincipals bounds the buckets kept; past it the least recently used
// goes (and would start full again: a brief allowance, never a refusal).
const maxPrincipals = 100_000

// New allows each principal perSecond units per second with the given
// burst. perSecond <= 0 disables limiting.
func New(perSecond float64, burst int) *Limiter {
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	idleTTL := time.Minute
	if perSecond > 0 {
		idleTTL = max(idleTTL, time.Duration(float64(burst)/perSecond*float64(time.Second)))
	}
	return &Limiter{limit: rate.Limit(perSecond), burst: burst, per: expirable.NewLRU[string, *rate.Limiter](maxPrincipals, nil, idleTTL), now: time.Now}
}

// Burst is the most units one call may take.
func (l *Limiter) Burst() int { return l.burst }

// Enabled reports whether limits apply.
func (l *Limiter) Enabled() bool { return l != nil && l.limit > 0 }

// Take takes n units for principal. It returns ok, or how long to wait
// before the same request would be allowed; tooBig says n exceeds the
// burst and can never be allowed in one call.
func (l *Limiter) Take(principal string, n int) (ok bool, retryAfter time.Duration, tooBig bool) {
	if !l.Enabled() {
		return true, 0, false
	}
	if n > l.burst {
		return false, 0, true
	}
	l.mu.Lock()
	lim, found := l.per.Get(principal)
	if !found {
		lim = rate.NewLimiter(l.limit, l.burst)
	}
	// Add on every use: the entry expires idleTTL after its last use.
	l.per.Add(principal, lim)
	l.mu.Unlock()
	now := l.now()
	r := lim.ReserveN(now, n)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, false
	}
	return true, 0, false
}

// Ready reports whether principal has at least one unit now, without
// taking any, or how long until it has. Ingest asks before reading a
// request's body, so that a principal over its rate costs no
// decompression or decoding; the request's records are taken with Take
// once they are counted.
func (l *Limiter) Ready(principal string) (ok bool, retryAfter time.Duration) {
	if !l.Enabled() {
		return true, 0
	}
	l.mu.Lock()
	lim, found := l.per.Get(principal)
	l.mu.Unlock()
	if !found {
		return true, 0 // a fresh bucket is full
	}
	if tokens := lim.TokensAt(l.now()); tokens < 1 {
		return false, time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second))
	}
	return true, 0
}

// RetryAfterSeconds rounds a wait up to whole seconds, at least 1, as the
// Retry-After header needs.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
