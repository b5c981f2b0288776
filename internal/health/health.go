// Package health is the registry of named readiness checks behind
// /readyz: each part of the process (JetStream, the log, every supervised
// role, ...) adds one check with one line, and readiness is all of them.
package health

import (
	"context"
	"slices"
	"sync"
)

// Check reports why its part is not ready, or nil.
type Check func(ctx context.Context) error

// Registry holds named checks. It is safe for concurrent use.
type Registry struct {
	mu     sync.RWMutex
	names  []string
	checks map[string]Check
}

// New makes an empty registry.
func New() *Registry { return &Registry{checks: map[string]Check{}} }

// Add registers c under name, replacing a check of that name.
func (r *Registry) Add(name string, c Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.checks[name]; !ok {
		r.names = append(r.names, name)
	}
	r.checks[name] = c
}

// Names lists the registered checks in the order they were added.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.names)
}

// Report is the outcome of every check: "ok" or the check's error.
type Report struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// Run runs every check but those in exclude, concurrently (a slow check
// does not add to the others' time), each bounded by ctx.
func (r *Registry) Run(ctx context.Context, exclude ...string) Report {
	r.mu.RLock()
	type named struct {
		name string
		c    Check
	}
	var todo []named
	for _, n := range r.names {
		if !slices.Contains(exclude, n) {
			todo = append(todo, named{n, r.checks[n]})
		}
	}
	r.mu.RUnlock()
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, t := range todo {
		wg.Go(func() { errs[i] = t.c(ctx) })
	}
	wg.Wait()
	rep := Report{Ready: true, Checks: make(map[string]string, len(todo))}
	for i, t := range todo {
		if errs[i] != nil {
			rep.Ready = false
			rep.Checks[t.name] = errs[i].Error()
		} else {
			rep.Checks[t.name] = "ok"
		}
	}
	return rep
}
