// Package supervise runs a process's roles (ingest's HTTP server, the
// signer, the span writer, metrics, ...) under one supervisor: a role
// that fails is restarted after an exponentially growing pause, and its
// failure is visible to readiness meanwhile instead of only in a log
// line; a critical role's failure stops the process.
//
// Why hand-written: errgroup stops everything on the first error, which
// is right only for critical roles; the restart loop is a few lines
// around github.com/cenkalti/backoff/v5, which does the arithmetic.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Role is one long-running part of the process.
type Role struct {
	Name string
	// Run works until ctx ends and then returns nil. An error, or a
	// return before ctx ends, is a failure.
	Run func(ctx context.Context) error
	// Health, when set, is the role's own account of its health while
	// it runs (e.g. a span writer retrying against a ClickHouse that is
	// down): a non-nil error makes the role's check fail.
	Health func() error
	// Critical roles are not restarted: their failure ends Run with the
	// error, and with it the process (e.g. the HTTP server: without it
	// nothing else is reachable).
	Critical bool
}

// Config tunes restarts.
type Config struct {
	// InitialBackoff and MaxBackoff bound the pause before a restart; it
	// doubles with every failure in a row.
	InitialBackoff, MaxBackoff time.Duration
	// StableAfter is how long a restarted role must run before its
	// failure is cleared from readiness and its pause reset: a role that
	// fails right after each start stays reported instead of flapping.
	StableAfter time.Duration
	Logger      *slog.Logger
}

// Validate checks the durations; zero values take defaults.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"InitialBackoff", c.InitialBackoff}, {"MaxBackoff", c.MaxBackoff}, {"StableAfter", c.StableAfter}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s: %v is negative", f.name, f.d))
		}
	}
	if c.MaxBackoff > 0 && c.InitialBackoff > c.MaxBackoff {
		errs = append(errs, fmt.Errorf("InitialBackoff: %v is above MaxBackoff %v", c.InitialBackoff, c.MaxBackoff))
	}
	return errors.Join(errs...)
}

// Supervisor runs roles.
type Supervisor struct {
	cfg   Config
	mu    sync.Mutex
	roles []Role
	state map[string]*state
}

// state is a role's last failure, kept until it has run StableAfter.
type state struct {
	err      error
	restarts int
}

// New makes a supervisor; Add roles, then Run.
func New(cfg Config) *Supervisor {
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Supervisor{cfg: cfg, state: map[string]*state{}}
}

// Add registers a role; call it before Run.
func (s *Supervisor) Add(r Role) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles = append(s.roles, r)
	s.state[r.Name] = &state{}
}

// Names lists the roles in the order added.
func (s *Supervisor) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.roles))
	for i, r := range s.roles {
		out[i] = r.Name
	}
	return out
}

// Check is the readiness of the named role: its last failure while that
// is not yet behind it, else its own Health. It fits health.Check.
func (s *Supervisor) Check(name string) func(context.Context) error {
	return func(context.Context) error {
		s.mu.Lock()
		st, ok := s.state[name]
		var err error
		var health func() error
		if ok {
			err = st.err
			for _, r := range s.roles {
				if r.Name == name {
					health = r.Health
				}
			}
		}
		s.mu.Unlock()
		switch {
		case !ok:
			return fmt.Errorf("no role %q", name)
		case err != nil:
			return err
		case health != nil:
			return health()
		}
		return nil
	}
}

// Run runs every role until ctx ends, restarting failed ones, and returns
// once all have returned: nil after ctx ended, or the failure of a
// critical role (after the others have stopped).
func (s *Supervisor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.mu.Lock()
	roles := append([]Role(nil), s.roles...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range roles {
		wg.Go(func() {
			if err := s.supervise(ctx, r); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// supervise runs one role until ctx ends; it returns an error only when a
// critical role failed.
func (s *Supervisor) supervise(ctx context.Context, r Role) error {
	bo := &backoff.ExponentialBackOff{
		InitialInterval: s.cfg.InitialBackoff, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: s.cfg.MaxBackoff,
	}
	log := s.cfg.Logger.With("role", r.Name)
	for {
		stable := time.AfterFunc(s.cfg.StableAfter, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if st := s.state[r.Name]; st.err != nil {
				log.Info("role recovered", "restarts", st.restarts)
				st.err = nil
			}
			bo.Reset()
		})
		err := runRole(ctx, r)
		stable.Stop()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped without an error")
		}
		if r.Critical {
			log.Error("critical role failed", "err", err)
			return fmt.Errorf("%s: %w", r.Name, err)
		}
		s.mu.Lock()
		st := s.state[r.Name]
		pause := bo.NextBackOff()
		st.restarts++
		st.err = fmt.Errorf("failed (restart %d in %v): %w", st.restarts, pause.Round(time.Millisecond), err)
		s.mu.Unlock()
		log.Error("role failed; restarting", "err", err, "backoff", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
	}
}

// runRole runs r once, turning a panic into an error so that one role's
// bug is a failure to restart, not the end of every role.
func runRole(ctx context.Context, r Role) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return r.Run(ctx)
}
