package verify

import (
	"context"
	"iter"
)

// fetchAhead is how many entry bundles (with their level-0 tiles) an audit
// fetches ahead of the one it is hashing. An audit reads every resource of
// the log; one round trip at a time would make auditing a large remote log
// take hours, while hashing is cheap.
const fetchAhead = 8

// prefetch yields fetch(i) for i in [0, n) in order, with about width
// fetches in flight. It stops after the first error; a cancelled ctx is
// reported as an error, never as a short sequence.
func prefetch[T any](ctx context.Context, n uint64, width int, fetch func(context.Context, uint64) (T, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		inner, cancel := context.WithCancel(ctx)
		defer cancel()
		type result struct {
			v   T
			err error
		}
		// Each fetch gets its own buffered channel, queued in index order:
		// results arrive in any order but are consumed in sequence, and a
		// fetch abandoned on cancellation never blocks.
		queue := make(chan chan result, max(width-1, 0))
		go func() {
			defer close(queue)
			for i := range n {
				ch := make(chan result, 1)
				go func() {
					v, err := fetch(inner, i)
					ch <- result{v, err}
				}()
				select {
				case queue <- ch:
				case <-inner.Done():
					return
				}
			}
		}()
		var done uint64
		for ch := range queue {
			r := <-ch
			if !yield(r.v, r.err) || r.err != nil {
				return
			}
			done++
		}
		if err := ctx.Err(); err != nil && done < n {
			var zero T
			yield(zero, err)
		}
	}
}
