package supervise

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proofline/proofline/internal/health"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFailedRoleIsReportedAndRestarted: a role that returns an error is
// named with its error by readiness, restarted with backoff, and cleared
// once a restart keeps running; the other roles keep running throughout.
func TestFailedRoleIsReportedAndRestarted(t *testing.T) {
	s := New(Config{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, StableAfter: 20 * time.Millisecond})
	var runs, steady atomic.Int32
	heal := make(chan struct{})
	s.Add(Role{Name: "spanstore", Run: func(ctx context.Context) error {
		runs.Add(1)
		select {
		case <-heal:
			<-ctx.Done()
			return nil
		default:
			return errors.New("clickhouse ping: connection refused")
		}
	}})
	s.Add(Role{Name: "signer", Run: func(ctx context.Context) error {
		steady.Add(1)
		<-ctx.Done()
		return nil
	}})
	reg := health.New()
	for _, n := range s.Names() {
		reg.Add(n, s.Check(n))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	waitFor(t, "restarts", func() bool { return runs.Load() >= 3 })
	rep := reg.Run(context.Background())
	if rep.Ready || !strings.Contains(rep.Checks["spanstore"], "connection refused") || rep.Checks["signer"] != "ok" {
		t.Fatalf("readiness while the span store fails: %+v", rep)
	}
	if got := reg.Run(context.Background(), "spanstore"); !got.Ready {
		t.Fatalf("readiness excluding the failing role: %+v", got)
	}
	close(heal)
	waitFor(t, "recovery", func() bool { return reg.Run(context.Background()).Ready })
	if steady.Load() != 1 {
		t.Fatalf("the healthy role was started %d times, want once", steady.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

// TestRoleHealth: a running role's own Health is its readiness.
func TestRoleHealth(t *testing.T) {
	s := New(Config{})
	var failing atomic.Pointer[error]
	s.Add(Role{Name: "spanstore", Run: func(ctx context.Context) error { <-ctx.Done(); return nil },
		Health: func() error {
			if p := failing.Load(); p != nil {
				return *p
			}
			return nil
		}})
	check := s.Check("spanstore")
	if err := check(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := errors.New("insert: connection refused")
	failing.Store(&e)
	if err := check(context.Background()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("check while the role reports a failure: %v", err)
	}
}

// TestCriticalRoleStopsAll: a critical role's failure ends Run with its
// error after every other role has been stopped; a panicking role is a
// failure, not a crash.
func TestCriticalRoleStopsAll(t *testing.T) {
	s := New(Config{InitialBackoff: time.Millisecond})
	var stopped atomic.Bool
	var panics atomic.Int32
	s.Add(Role{Name: "signer", Run: func(ctx context.Context) error {
		<-ctx.Done()
		stopped.Store(true)
		return nil
	}})
	s.Add(Role{Name: "buggy", Run: func(context.Context) error {
		panics.Add(1)
		panic("bug")
	}})
	release := make(chan struct{})
	s.Add(Role{Name: "http", Critical: true, Run: func(context.Context) error {
		<-release
		return errors.New("listener closed")
	}})
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	waitFor(t, "the panicking role to be restarted", func() bool { return panics.Load() >= 2 })
	if err := s.Check("buggy")(context.Background()); err == nil || !strings.Contains(err.Error(), "panic: bug") {
		t.Fatalf("check of a panicking role: %v", err)
	}
	close(release)
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "http: listener closed") {
		t.Fatalf("Run: %v, want the critical role's error", err)
	}
	if !stopped.Load() {
		t.Fatal("Run returned before the other roles stopped")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	err := Config{InitialBackoff: time.Minute, MaxBackoff: time.Second, StableAfter: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "StableAfter") || !strings.Contains(err.Error(), "InitialBackoff") {
		t.Fatalf("Validate: %v", err)
	}
}
