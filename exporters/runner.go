package exporters

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Route says which records a sink receives. Empty lists mean "all".
type Route struct {
	// Regions: a record with a `region` goes only to sinks that list it;
	// records without one go to every sink.
	Regions []string
	// DataClasses: a record with a `data_class` goes only to sinks that
	// list it (so `pii` never reaches a sink that does not name `pii`);
	// records without one go to every sink.
	DataClasses []string
	// Filter, when set, must also say yes (exporters/filter compiles a
	// CEL expression into one). An error dead-letters the record for this
	// sink with the error as the reason.
	Filter func(record []byte) (bool, error)
}

// Match reports whether a record with these fields goes to the sink.
func (r Route) Match(region, dataClass string) bool {
	if region != "" && len(r.Regions) > 0 && !slices.Contains(r.Regions, region) {
		return false
	}
	if dataClass != "" && len(r.DataClasses) > 0 && !slices.Contains(r.DataClasses, dataClass) {
		return false
	}
	return true
}

// SinkSpec is one sink and how the runner feeds it.
type SinkSpec struct {
	Name  string
	Sink  Sink
	Route Route
	// BatchSize is the most events per Send (default 500).
	BatchSize int
	// BreakerFailures consecutive failed sends open the breaker (default 5);
	// it stays open BreakerOpen (default 30s) before a probe.
	BreakerFailures uint32
	BreakerOpen     time.Duration
	// FromEnd starts the sink at the log's size when the runner starts,
	// whatever its cursor says: for sinks whose state lives only in the
	// process (metrics), which must not count old calls again.
	FromEnd bool
}

// Config configures a Runner.
type Config struct {
	Source *Source
	State  State
	Sinks  []SinkSpec
	// PollInterval is how often the source's checkpoint is read (default 1s).
	PollInterval time.Duration
	// MaxBackoff caps the wait between retries of a failing sink (default 30s).
	MaxBackoff time.Duration
	Logger     *slog.Logger
	// Registerer receives the per-sink metrics; nil for none.
	Registerer prometheus.Registerer
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Source == nil {
		errs = append(errs, errors.New("exporters: no log source"))
	}
	if c.State == nil {
		errs = append(errs, errors.New("exporters: no state directory"))
	}
	if len(c.Sinks) == 0 {
		errs = append(errs, errors.New("exporters: no sinks"))
	}
	seen := map[string]bool{}
	for i, s := range c.Sinks {
		switch {
		case s.Name == "":
			errs = append(errs, fmt.Errorf("exporters: sink %d has no name", i))
		case !validName(s.Name):
			errs = append(errs, fmt.Errorf("exporters: sink name %q: use letters, digits, '-' and '_'", s.Name))
		case seen[s.Name]:
			errs = append(errs, fmt.Errorf("exporters: two sinks named %q", s.Name))
		}
		seen[s.Name] = true
		if s.Sink == nil {
			errs = append(errs, fmt.Errorf("exporters: sink %q has no implementation", s.Name))
		}
		if s.BatchSize < 0 {
			errs = append(errs, fmt.Errorf("exporters: sink %q: batch size %d", s.Name, s.BatchSize))
		}
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return s != ""
}

// Runner follows a log and feeds every sink from its own cursor: a slow or
// failing sink never holds the others back.
type Runner struct {
	cfg Config
	log *slog.Logger
	m   *runnerMetrics

	mu      sync.Mutex
	latest  *Anchor
	seen    []seenAnchor // when each tree size was first read, for lag in seconds
	waiters []chan struct{}
}

type seenAnchor struct {
	size uint64
	at   time.Time
}

// New checks cfg and makes a Runner.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for i := range cfg.Sinks {
		if cfg.Sinks[i].BatchSize == 0 {
			cfg.Sinks[i].BatchSize = 500
		}
		if cfg.Sinks[i].BreakerFailures == 0 {
			cfg.Sinks[i].BreakerFailures = 5
		}
		if cfg.Sinks[i].BreakerOpen <= 0 {
			cfg.Sinks[i].BreakerOpen = 30 * time.Second
		}
	}
	m, err := newRunnerMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	// Each sink's counters exist at 0 from the start: a series that
	// first appears at 1 is no increase to Prometheus, and the first
	// dead letters after a restart would raise no alert.
	for _, spec := range cfg.Sinks {
		m.delivered.WithLabelValues(spec.Name)
		m.deadLettered.WithLabelValues(spec.Name)
	}
	return &Runner{cfg: cfg, log: cfg.Logger, m: m}, nil
}

// Run delivers until ctx ends (then it returns nil) or the log proves
// inconsistent with what was exported before (a fork or rollback: it
// returns an error wrapping ErrInconsistent and delivers nothing more).
// Sinks are closed before Run returns.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i := range r.cfg.Sinks {
		spec := r.cfg.Sinks[i]
		wake := make(chan struct{}, 1)
		r.mu.Lock()
		r.waiters = append(r.waiters, wake)
		r.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.sinkLoop(ctx, spec, wake); err != nil {
				cancel(err)
			}
		}()
	}
	err := r.poll(ctx)
	if err != nil {
		cancel(err)
	}
	wg.Wait()
	closeCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer done()
	for _, s := range r.cfg.Sinks {
		if cerr := s.Sink.Close(closeCtx); cerr != nil {
			r.log.Warn("closing sink", "sink", s.Name, "error", cerr)
		}
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// poll reads the source's checkpoint every PollInterval and wakes the sinks
// when it moved.
func (r *Runner) poll(ctx context.Context) error {
	trusted, err := r.cfg.State.LoadTrusted()
	if err != nil {
		return fmt.Errorf("exporters: %w", err)
	}
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		a, err := r.cfg.Source.Latest(ctx, trusted)
		switch {
		case errors.Is(err, ErrInconsistent):
			r.log.Error("the log is not consistent with the checkpoint exported before: delivery stopped", "error", err)
			return err
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("reading the log's checkpoint", "error", err)
		default:
			r.publish(a)
			if trusted == nil || a.TreeSize > 0 && string(a.Note) != string(trusted) {
				if err := r.cfg.State.SaveTrusted(a.Note); err != nil {
					r.log.Warn("saving the trusted checkpoint", "error", err)
				}
				trusted = a.Note
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *Runner) publish(a *Anchor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.latest != nil && a.TreeSize <= r.latest.TreeSize {
		return
	}
	r.latest = a
	r.seen = append(r.seen, seenAnchor{size: a.TreeSize, at: time.Now()})
	if len(r.seen) > 4096 {
		r.seen = r.seen[len(r.seen)-4096:]
	}
	for _, w := range r.waiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (r *Runner) current() *Anchor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest
}

// lagSince is when the oldest leaf at or above next was first seen in a
// checkpoint: how long the sink has been behind it.
func (r *Runner) lagSince(next uint64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen {
		if s.size > next {
			return s.at, true
		}
	}
	return time.Time{}, false
}

// sinkLoop feeds one sink for as long as ctx lasts, each time it holds
// the sink (State.Hold): with shared state, a runner that lost the sink to
// another waits to take it back.
func (r *Runner) sinkLoop(ctx context.Context, spec SinkSpec, wake <-chan struct{}) error {
	for {
		hctx, release, err := r.cfg.State.Hold(ctx, spec.Name)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("exporters: sink %s: %w", spec.Name, err)
		}
		err = r.sinkHeld(hctx, spec, wake)
		release()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil || errors.Is(err, ErrLeaseLost):
			r.log.Warn("another runner took the sink over; waiting to hold it again", "sink", spec.Name)
			continue
		default:
			return err
		}
	}
}

func (r *Runner) sinkHeld(ctx context.Context, spec SinkSpec, wake <-chan struct{}) error {
	log := r.log.With("sink", spec.Name)
	cur, err := r.cfg.State.LoadCursor(spec.Name)
	if err != nil {
		return fmt.Errorf("exporters: %w", err)
	}
	st := &Status{Sink: spec.Name, Origin: r.cfg.Source.Origin(), Cursor: cur.Next, Breaker: "closed"}
	if old, err := r.cfg.State.LoadStatus(spec.Name); err == nil {
		st.Delivered, st.DeadLettered = old.Delivered, old.DeadLettered
	}
	br := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:    spec.Name,
		Timeout: spec.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= spec.BreakerFailures
		},
		// A throttle or a refused event means the receiver is up and
		// answering: neither should open the breaker.
		IsSuccessful: func(err error) bool {
			var rej *RejectedError
			var thr *ThrottleError
			return err == nil || errors.As(err, &rej) || errors.As(err, &thr)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			log.Warn("circuit breaker", "from", from.String(), "to", to.String())
			r.m.breaker.WithLabelValues(spec.Name).Set(float64(to))
			st.Breaker = to.String()
		},
	})
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 200*time.Millisecond, r.cfg.MaxBackoff
	var lastSave time.Time
	// saveStatus updates the metrics and, at most every 250ms unless the
	// sink is idle or failing, the status file (a view for `export status`,
	// not the cursor; writing it per batch cost as much as the delivery).
	saveStatus := func(a *Anchor) {
		st.Cursor, st.Updated = cur.Next, time.Now().UTC()
		if a != nil {
			st.TreeSize = a.TreeSize
		}
		st.LagLeaves, st.LagSeconds = 0, 0
		if st.TreeSize > cur.Next {
			st.LagLeaves = st.TreeSize - cur.Next
			if since, ok := r.lagSince(cur.Next); ok {
				st.LagSeconds = time.Since(since).Seconds()
			}
		}
		r.m.lagLeaves.WithLabelValues(spec.Name).Set(float64(st.LagLeaves))
		r.m.lagSeconds.WithLabelValues(spec.Name).Set(st.LagSeconds)
		if st.LagLeaves > 0 && st.LastError == "" && time.Since(lastSave) < 250*time.Millisecond {
			return
		}
		lastSave = time.Now()
		if err := r.cfg.State.SaveStatus(*st); err != nil {
			log.Warn("saving status", "error", err)
		}
	}
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	if spec.FromEnd {
		a := r.current()
		for a == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-wake:
			case <-time.After(r.cfg.PollInterval):
			}
			a = r.current()
		}
		cur.Next, cur.AnchorSize = a.TreeSize, a.TreeSize
		if err := r.cfg.State.SaveCursor(spec.Name, cur); err != nil {
			return fmt.Errorf("exporters: sink %s: %w", spec.Name, err)
		}
		log.Info("starting at the log's end", "leaf", cur.Next)
	}
	// pf is the next batch, read while the current one is delivered, so
	// that reading and proving overlap the sink's round trip (or fsync).
	var pf *readAhead
	defer func() {
		if pf != nil {
			<-pf.done
		}
	}()
	for ctx.Err() == nil {
		if from, ok, err := r.cfg.State.TakeReplay(spec.Name); err != nil {
			log.Warn("replay request", "error", err)
		} else if ok {
			log.Info("replay: cursor moved", "from", cur.Next, "to", from)
			cur.Next, cur.AnchorSize = from, 0
			if err := r.cfg.State.SaveCursor(spec.Name, cur); err != nil {
				return fmt.Errorf("exporters: sink %s: %w", spec.Name, err)
			}
		}
		a := r.current()
		if a == nil || (cur.Next >= a.TreeSize && cur.AnchorSize == a.TreeSize) {
			saveStatus(a)
			select {
			case <-ctx.Done():
				return nil
			case <-wake:
			case <-time.After(r.cfg.PollInterval):
			}
			continue
		}
		if cur.Next > a.TreeSize {
			// A replay beyond the log, or a cursor from another log.
			log.Error("cursor is beyond the log's size", "cursor", cur.Next, "tree_size", a.TreeSize)
			st.LastError = fmt.Sprintf("cursor %d is beyond the log's size %d", cur.Next, a.TreeSize)
			saveStatus(a)
			if !sleep(r.cfg.MaxBackoff) {
				return nil
			}
			continue
		}
		to := min(cur.Next+uint64(spec.BatchSize), a.TreeSize)
		var events []Event
		if pf != nil && pf.from == cur.Next {
			// The batch read while the previous one was delivered, proven
			// against the checkpoint current then: it is signed too, and
			// the next batch catches up with the newer one.
			<-pf.done
			a, to, events, err = pf.a, pf.to, pf.events, pf.err
		} else {
			if pf != nil {
				<-pf.done // a replay moved the cursor: that batch is not the next
			}
			events, err = r.cfg.Source.Read(ctx, a, cur.Next, to)
		}
		pf = nil
		if err == nil && to < a.TreeSize {
			pf = r.readAhead(ctx, a, to, min(to+uint64(spec.BatchSize), a.TreeSize))
		}
		if errors.Is(err, ErrInconsistent) {
			return err
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("reading the log", "error", err)
			st.LastError = err.Error()
			saveStatus(a)
			if !sleep(bo.NextBackOff()) {
				return nil
			}
			continue
		}
		kept := events[:0:0]
		var unfiltered []DeadLetter
		deadLetter := func(e Event, reason error) {
			unfiltered = append(unfiltered, DeadLetter{Time: time.Now().UTC(), Sink: spec.Name, LeafIndex: e.Evidence.LeafIndex, RecordID: e.Evidence.RecordID, Reason: reason.Error()})
			log.Warn("event dead-lettered", "leaf_index", e.Evidence.LeafIndex, "record_id", e.Evidence.RecordID, "reason", reason.Error())
		}
		for _, e := range events {
			if e.notRecord != nil {
				// No route or filter can read it: every sink records it as
				// a dead letter, so the log and each sink's deliveries and
				// dead letters still add up.
				deadLetter(e, e.notRecord)
				continue
			}
			if !spec.Route.Match(e.region, e.dataClass) {
				continue
			}
			if spec.Route.Filter != nil {
				ok, err := spec.Route.Filter(e.Record)
				if err != nil {
					deadLetter(e, err)
					continue
				}
				if !ok {
					continue
				}
			}
			kept = append(kept, e)
		}
		b := Batch{Events: kept}
		if cur.AnchorSize != a.TreeSize {
			b.Anchor = a
		}
		if len(b.Events) > 0 || b.Anchor != nil || len(unfiltered) > 0 {
			var dead []DeadLetter
			if len(b.Events) > 0 || b.Anchor != nil {
				var ok bool
				if dead, ok = r.deliver(ctx, log, spec, br, bo, b, st, func() { saveStatus(a) }); !ok {
					return nil
				}
			}
			delivered := len(b.Events) - len(dead)
			if len(unfiltered) > 0 {
				dead = append(unfiltered, dead...)
				slices.SortFunc(dead, func(a, b DeadLetter) int { return cmp.Compare(a.LeafIndex, b.LeafIndex) })
			}
			if len(dead) > 0 {
				if err := r.cfg.State.AppendDeadLetters(spec.Name, dead); err != nil {
					return fmt.Errorf("exporters: sink %s: dead letters: %w", spec.Name, err)
				}
				st.DeadLettered += uint64(len(dead))
				r.m.deadLettered.WithLabelValues(spec.Name).Add(float64(len(dead)))
			}
			st.Delivered += uint64(delivered)
			r.m.delivered.WithLabelValues(spec.Name).Add(float64(delivered))
		}
		cur.Next, cur.Updated = to, time.Now().UTC()
		if to == a.TreeSize || b.Anchor != nil {
			cur.AnchorSize = a.TreeSize
		}
		if err := r.cfg.State.SaveCursor(spec.Name, cur); err != nil {
			return fmt.Errorf("exporters: sink %s: cursor: %w", spec.Name, err)
		}
		st.LastError = ""
		saveStatus(a)
	}
	return nil
}

// readAhead is a batch being read in the background.
type readAhead struct {
	a        *Anchor
	from, to uint64
	done     chan struct{}
	events   []Event
	err      error
}

func (r *Runner) readAhead(ctx context.Context, a *Anchor, from, to uint64) *readAhead {
	pf := &readAhead{a: a, from: from, to: to, done: make(chan struct{})}
	go func() {
		defer close(pf.done)
		pf.events, pf.err = r.cfg.Source.Read(ctx, a, from, to)
	}()
	return pf
}

// deliver sends b until the sink takes it, waiting as the error's class
// says. It returns the events the sink refused for good, as dead letters,
// and false only when ctx ended first.
func (r *Runner) deliver(ctx context.Context, log *slog.Logger, spec SinkSpec, br *gobreaker.CircuitBreaker[struct{}],
	bo *backoff.ExponentialBackOff, b Batch, st *Status, save func()) ([]DeadLetter, bool) {
	for {
		_, err := br.Execute(func() (struct{}, error) { return struct{}{}, spec.Sink.Send(ctx, b) })
		class := classify(err)
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			class = "breaker_open"
		}
		if class != "ok" {
			r.m.attempts.WithLabelValues(spec.Name, class).Inc()
		}
		var rej *RejectedError
		var thr *ThrottleError
		var wait time.Duration
		switch {
		case err == nil:
			bo.Reset()
			return nil, true
		case errors.As(err, &rej):
			bo.Reset()
			now := time.Now().UTC()
			var dead []DeadLetter
			for i, reason := range rej.Reasons {
				if i < 0 || i >= len(b.Events) {
					continue
				}
				ev := b.Events[i].Evidence
				dead = append(dead, DeadLetter{Time: now, Sink: spec.Name, LeafIndex: ev.LeafIndex, RecordID: ev.RecordID, Reason: reason})
				log.Warn("event dead-lettered", "leaf_index", ev.LeafIndex, "record_id", ev.RecordID, "reason", reason)
			}
			slices.SortFunc(dead, func(a, b DeadLetter) int { return cmp.Compare(a.LeafIndex, b.LeafIndex) })
			return dead, true
		case errors.As(err, &thr):
			wait = min(max(thr.RetryAfter, 100*time.Millisecond), r.cfg.MaxBackoff)
		case class == "breaker_open":
			wait = min(spec.BreakerOpen, r.cfg.MaxBackoff) / 4
		case class == "fatal":
			wait = r.cfg.MaxBackoff
		default:
			wait = bo.NextBackOff()
		}
		st.LastError = fmt.Sprintf("%s: %v", class, err)
		log.Warn("delivery failed, will retry", "class", class, "retry_in", wait.String(), "error", err)
		save()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		}
	}
}

type runnerMetrics struct {
	delivered, deadLettered *prometheus.CounterVec
	attempts                *prometheus.CounterVec
	lagLeaves, lagSeconds   *prometheus.GaugeVec
	breaker                 *prometheus.GaugeVec
}

func newRunnerMetrics(reg prometheus.Registerer) (*runnerMetrics, error) {
	m := &runnerMetrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proofline_export_delivered_total",
			Help: "Events a sink acknowledged."}, []string{"sink"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proofline_export_deadlettered_total",
			Help: "Events a sink refused for good, written to its dead-letter file."}, []string{"sink"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proofline_export_failed_sends_total",
			Help: "Sends that did not deliver the whole batch, by class (transient, throttled, fatal, rejected, breaker_open)."}, []string{"sink", "class"}),
		lagLeaves: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "proofline_export_lag_leaves",
			Help: "Leaves in the newest checkpoint the sink has not received."}, []string{"sink"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "proofline_export_lag_seconds",
			Help: "How long the oldest undelivered leaf has been in a checkpoint."}, []string{"sink"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "proofline_export_breaker_state",
			Help: "The sink's circuit breaker: 0 closed, 1 half-open, 2 open."}, []string{"sink"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.delivered, m.deadLettered, m.attempts, m.lagLeaves, m.lagSeconds, m.breaker} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("exporters: metrics: %w", err)
		}
	}
	return m, nil
}
