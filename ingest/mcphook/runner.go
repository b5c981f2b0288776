package mcphook

import (
	"sync"
	"sync/atomic"
	"time"
)

// runner runs the tool calls that have a timeout, each on a goroutine
// other than the caller's, so that the hook can answer a call whose tool
// is still running when its time is up.
//
// Why not a new goroutine per call, as before: a fresh goroutine starts
// with a small stack, and the SDK's handler chain grew it by copying
// (runtime.copystack) on every call — most of the CPU of a timed call
// (bench/mcphook -timeout, bench/RESULTS.md). Workers keep their grown
// stacks between calls. A call finds an idle worker or starts one, so a
// tool that hangs holds up only its own worker, as it held its own
// goroutine before; workers idle for workerIdle exit, so a burst leaves
// no goroutines behind.
type runner struct {
	jobs chan func()
	stop chan struct{}
	once sync.Once
	// started counts the workers started, for the test that they are
	// reused.
	started atomic.Int64
}

// workerIdle is how long a worker waits for another call before it exits.
const workerIdle = 30 * time.Second

func newRunner() *runner {
	return &runner{jobs: make(chan func()), stop: make(chan struct{})}
}

// run runs f on an idle worker, or on a new one when none is waiting.
func (r *runner) run(f func()) {
	select {
	case r.jobs <- f:
	default:
		r.started.Add(1)
		go r.work(f)
	}
}

func (r *runner) work(f func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(workerIdle)
		select {
		case f = <-r.jobs:
		case <-idle.C:
			return
		case <-r.stop:
			return
		}
	}
}

// close lets idle workers exit; a worker running a call exits after it.
// Calls made after close still run, each on a goroutine of its own.
func (r *runner) close() { r.once.Do(func() { close(r.stop) }) }
