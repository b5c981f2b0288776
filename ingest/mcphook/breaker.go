package mcphook

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/proofline/proofline/schemas"
)

// BreakerConfig configures the circuit breaker in front of a tool, or of
// the downstream service several tools share (ToolConfig.Service). While
// a breaker is open, calls are refused at once with CodeCircuitOpen
// instead of waiting on a service that is failing; after OpenFor it lets
// Probes calls through (half-open) and closes when they all succeed.
// The state machine is sony/gobreaker's.
type BreakerConfig struct {
	// ConsecutiveFailures opens the breaker after this many failed calls
	// in a row (0: 5, unless FailureRate is set).
	ConsecutiveFailures uint32
	// FailureRate opens the breaker when at least this share of the calls
	// in the last Window failed, once MinCalls calls were made there
	// (0: off).
	FailureRate float64
	// MinCalls is the least number of calls in Window before FailureRate
	// is judged (default 20).
	MinCalls uint32
	// Window is the rolling window of FailureRate (default 60 s, counted
	// in ten buckets).
	Window time.Duration
	// OpenFor is how long the breaker stays open before probing
	// (default 30 s).
	OpenFor time.Duration
	// Probes is how many calls a half-open breaker lets through; all must
	// succeed for it to close, one failure opens it again (default 1).
	Probes uint32
	// Failures are the outcome statuses that count as failures (default
	// system_error and timeout). Add tool_error for tools whose
	// downstream failures come back as isError results, which tools
	// written with mcp.AddTool return for any error; by default those
	// are the caller's own errors (a ticket not found) and must not shut
	// a tool for everybody.
	Failures []string
}

// Validate reports a configuration that cannot work.
func (c *BreakerConfig) Validate() error {
	if c == nil {
		return nil
	}
	var errs []error
	if c.FailureRate < 0 || c.FailureRate > 1 {
		errs = append(errs, fmt.Errorf("FailureRate %v is not a share between 0 and 1", c.FailureRate))
	}
	if c.Window < 0 || c.OpenFor < 0 {
		errs = append(errs, errors.New("Window and OpenFor must not be negative"))
	}
	if c.Window > 0 && c.Window < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("Window %s is shorter than 10 ms", c.Window))
	}
	for _, s := range c.Failures {
		switch s {
		case schemas.StatusSystemError, schemas.StatusTimeout, schemas.StatusToolError:
		default:
			errs = append(errs, fmt.Errorf("Failures: %q is not an outcome a tool's failure can have (system_error, timeout, tool_error)", s))
		}
	}
	return errors.Join(errs...)
}

func (c BreakerConfig) withDefaults() BreakerConfig {
	if c.ConsecutiveFailures == 0 && c.FailureRate == 0 {
		c.ConsecutiveFailures = 5
	}
	if c.MinCalls == 0 {
		c.MinCalls = 20
	}
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	if c.OpenFor <= 0 {
		c.OpenFor = 30 * time.Second
	}
	if c.Probes == 0 {
		c.Probes = 1
	}
	if len(c.Failures) == 0 {
		c.Failures = []string{schemas.StatusSystemError, schemas.StatusTimeout}
	}
	return c
}

// Breaker states as the metric reports them.
const (
	breakerClosed   = 0
	breakerHalfOpen = 1
	breakerOpen     = 2
)

func stateValue(s gobreaker.State) int64 {
	switch s {
	case gobreaker.StateOpen:
		return breakerOpen
	case gobreaker.StateHalfOpen:
		return breakerHalfOpen
	}
	return breakerClosed
}

// breakerKey is the breaker a tool's calls go through: its service's when
// it names one, else its own.
func breakerKey(tool string, tc ToolConfig) string {
	if tc.Service != "" {
		return "service:" + tc.Service
	}
	return "tool:" + tool
}

// breaker is one circuit breaker and what counts as its failures.
type breaker struct {
	key      string
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	failures []string
	openFor  time.Duration
}

// outcomeErr carries a call's outcome status into gobreaker, which
// judges success by an error.
type outcomeErr string

func (e outcomeErr) Error() string { return string(e) }

// errNotCounted marks a call that says nothing about the tool's health
// (the caller went away, the hook's own concurrency cap refused it).
var errNotCounted = errors.New("not counted")

// breakers holds the hook's circuit breakers: the configured tools' and
// services' made up front, other tool names' (a client may call any name)
// made on first use in a bounded cache.
type breakers struct {
	def *BreakerConfig
	// fixed are the configured tools' breakers by key; byTool is each
	// configured tool's (nil: none), looked up on every call without
	// building its key.
	fixed   map[string]*breaker
	byTool  map[string]*breaker
	mu      sync.Mutex
	dynamic *expirable.LRU[string, *breaker]
	onState func(key string, to gobreaker.State)
}

// newBreakers makes the breakers of cfg. Two tools of one service with
// different breaker settings are a configuration error: one breaker
// cannot have both.
func newBreakers(def *BreakerConfig, tools map[string]ToolConfig, onState func(string, gobreaker.State)) (*breakers, error) {
	b := &breakers{def: def, fixed: map[string]*breaker{}, byTool: map[string]*breaker{}, onState: onState,
		dynamic: expirable.NewLRU[string, *breaker](limiterEntries, nil, limiterIdle)}
	if err := def.Validate(); err != nil {
		return nil, fmt.Errorf("Limits.Breaker: %w", err)
	}
	names := make([]string, 0, len(tools))
	for name := range tools {
		names = append(names, name)
	}
	sort.Strings(names)
	settingsOf := map[string]*BreakerConfig{}
	for _, name := range names {
		tc := tools[name]
		if err := tc.Breaker.Validate(); err != nil {
			return nil, fmt.Errorf("tool %s: Breaker: %w", name, err)
		}
		bc := tc.Breaker
		if bc == nil {
			bc = def
		}
		if bc == nil {
			b.byTool[name] = nil
			continue
		}
		key := breakerKey(name, tc)
		if prev, ok := settingsOf[key]; ok {
			if !sameBreakerConfig(*prev, *bc) {
				return nil, fmt.Errorf("tool %s: service %s already has a breaker with other settings (from another of its tools)", name, tc.Service)
			}
		} else {
			settingsOf[key] = bc
			b.fixed[key] = b.make(key, *bc)
		}
		b.byTool[name] = b.fixed[key]
	}
	return b, nil
}

func sameBreakerConfig(a, b BreakerConfig) bool {
	return reflect.DeepEqual(a.withDefaults(), b.withDefaults())
}

func (b *breakers) make(key string, bc BreakerConfig) *breaker {
	bc = bc.withDefaults()
	st := gobreaker.Settings{
		Name:         key,
		MaxRequests:  bc.Probes,
		Interval:     bc.Window,
		BucketPeriod: bc.Window / 10,
		Timeout:      bc.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if bc.ConsecutiveFailures > 0 && c.ConsecutiveFailures >= bc.ConsecutiveFailures {
				return true
			}
			// Excluded calls (refused by the hook, abandoned) are in
			// Requests too; they count neither way.
			n := uint32(0)
			if c.Requests > c.TotalExclusions {
				n = c.Requests - c.TotalExclusions
			}
			return bc.FailureRate > 0 && n >= bc.MinCalls && float64(c.TotalFailures) >= bc.FailureRate*float64(n)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errNotCounted) },
		OnStateChange: func(name string, _, to gobreaker.State) {
			if b.onState != nil {
				b.onState(name, to)
			}
		},
	}
	return &breaker{key: key, cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](st), failures: bc.Failures, openFor: bc.OpenFor}
}

// of is the breaker of a tool's calls, nil when none is configured.
func (b *breakers) of(tool string) *breaker {
	if br, configured := b.byTool[tool]; configured || b.def == nil {
		return br
	}
	key := breakerKey(tool, ToolConfig{})
	b.mu.Lock()
	defer b.mu.Unlock()
	br, ok := b.dynamic.Get(key)
	if !ok {
		br = b.make(key, *b.def)
		b.dynamic.Add(key, br)
	}
	return br
}

// all is every breaker made so far, for the state metric.
func (b *breakers) all() []*breaker {
	out := make([]*breaker, 0, len(b.fixed))
	for _, br := range b.fixed {
		out = append(out, br)
	}
	b.mu.Lock()
	out = append(out, b.dynamic.Values()...)
	b.mu.Unlock()
	return out
}

// allow asks the breaker to let a call through. done reports the call's
// outcome status ("" for a call that says nothing about the tool's
// health); it must be called exactly once.
func (br *breaker) allow() (done func(status string), err error) {
	report, err := br.cb.Allow()
	if err != nil {
		return nil, err
	}
	return func(status string) {
		switch {
		case status == "":
			report(errNotCounted)
		case slices.Contains(br.failures, status):
			report(outcomeErr(status))
		default:
			report(nil)
		}
	}, nil
}

// refusal is the answer to a call the open breaker refused.
func (br *breaker) refusal(tool string, err error) *refusal {
	state := "open"
	if errors.Is(err, gobreaker.ErrTooManyRequests) {
		state = "half-open, probe in flight"
	}
	return &refusal{status: schemas.StatusSystemError, code: CodeCircuitOpen,
		msg: fmt.Sprintf("%s is not being called: circuit breaker %s is %s after repeated failures; retry after %s", tool, br.key, state, br.openFor)}
}

// breakerMetrics reports breaker states and transitions through the
// OpenTelemetry metrics API, to whatever MeterProvider the server uses
// (its Prometheus exporter, OTLP).
func (h *Hook) breakerMetrics(mp metric.MeterProvider) (func(string, gobreaker.State), error) {
	m := mp.Meter("github.com/proofline/proofline/ingest/mcphook")
	trans, err := m.Int64Counter("proofline.mcphook.breaker.transitions",
		metric.WithDescription("Circuit breaker state changes, by breaker and the state entered."))
	if err != nil {
		return nil, err
	}
	gauge, err := m.Int64ObservableGauge("proofline.mcphook.breaker.state",
		metric.WithDescription("Circuit breaker state: 0 closed, 1 half-open, 2 open."))
	if err != nil {
		return nil, err
	}
	if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if h.brk == nil {
			return nil
		}
		for _, br := range h.brk.all() {
			o.ObserveInt64(gauge, stateValue(br.cb.State()), metric.WithAttributes(attribute.String("breaker", br.key)))
		}
		return nil
	}, gauge); err != nil {
		return nil, err
	}
	return func(key string, to gobreaker.State) {
		trans.Add(context.Background(), 1, metric.WithAttributes(attribute.String("breaker", key), attribute.String("to", to.String())))
		h.log.Warn("mcphook: circuit breaker changed state", "breaker", key, "state", to.String())
	}, nil
}
