package mcphook

import (
	"runtime"
	"testing"
	"time"

	"github.com/proofline/proofline/internal/testutil"
)

// A timed call's tool runs on a worker: a tool that hangs must hold up
// only its own call, workers must be reused rather than piling up, and
// closing must let idle workers go (a hook closed leaves no goroutines).
func TestRunnerWorkers(t *testing.T) {
	before := runtime.NumGoroutine()
	r := newRunner()

	hung, release := make(chan struct{}), make(chan struct{})
	r.run(func() { close(hung); <-release })
	<-hung
	for i := range 100 {
		done := make(chan struct{})
		r.run(func() { close(done) })
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("call %d did not run while another call's tool hung", i)
		}
	}
	// One worker is hung; the hundred calls found an idle one, or (when
	// the last had not yet gone back to waiting) started another: a few,
	// not a goroutine per call.
	n := r.started.Load()
	t.Logf("workers started: %d", n)
	if n > 10 {
		t.Fatalf("%d workers started for 100 sequential calls and a hung one: workers are not reused", n)
	}

	r.close()
	close(release)
	testutil.Eventually(t, 10*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "workers exit after close")

	// After close a call still runs, on a goroutine that then exits.
	done := make(chan struct{})
	r.run(func() { close(done) })
	<-done
	testutil.Eventually(t, 10*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "a call after close leaves no worker")
}
