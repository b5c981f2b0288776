package mcphook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/proofline/proofline/schemas"
)

// Budget periods: calendar windows in UTC.
const (
	PeriodHour  = "hour"
	PeriodDay   = "day"
	PeriodMonth = "month"
)

// Budget limits the calls, and the cost, that the calls it covers may
// spend in a calendar period. A call that would go over is refused
// (policy_blocked, CodeBudgetExceeded, policy.rule "budget:NAME"); calls
// past the Soft share are marked in their records
// (attributes["proofline.budget.NAME"] = the share used) and counted in
// proofline.mcphook.budget.soft.
type Budget struct {
	// Name identifies the budget in records, metrics and the store:
	// letters, digits, '_' and '-'.
	Name string
	// Tool, Group and Principal restrict the budget to one tool, the
	// tools of one group (ToolConfig.Group), one caller; empty: all.
	Tool      string
	Group     string
	Principal string
	// PerPrincipal gives each caller a budget of its own; otherwise the
	// callers it covers share one.
	PerPrincipal bool
	// Period is hour, day or month.
	Period string
	// MaxCalls caps the calls (0: no cap).
	MaxCalls int64
	// MaxCost caps the declared cost (ToolConfig.Cost) of the calls, in
	// Currency (0: no cap).
	MaxCost  float64
	Currency string
	// Soft is the share of either cap past which calls are marked
	// (default 0.8).
	Soft float64
}

var budgetName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate reports what makes the budget unusable.
func (b *Budget) Validate() error {
	var errs []error
	if !budgetName.MatchString(b.Name) {
		errs = append(errs, fmt.Errorf("name %q: 1 to 64 letters, digits, '_' or '-'", b.Name))
	}
	switch b.Period {
	case PeriodHour, PeriodDay, PeriodMonth:
	default:
		errs = append(errs, fmt.Errorf("period %q: hour, day or month", b.Period))
	}
	if b.MaxCalls < 0 || b.MaxCost < 0 || math.IsNaN(b.MaxCost) || math.IsInf(b.MaxCost, 0) {
		errs = append(errs, errors.New("MaxCalls and MaxCost must be finite and not negative"))
	}
	if b.MaxCalls == 0 && b.MaxCost == 0 {
		errs = append(errs, errors.New("neither MaxCalls nor MaxCost is set"))
	}
	if b.MaxCost > 0 && !isCurrencyCode(b.Currency) {
		errs = append(errs, fmt.Errorf("MaxCost needs a Currency (ISO 4217, like USD), not %q", b.Currency))
	}
	if b.Soft < 0 || b.Soft > 1 {
		errs = append(errs, fmt.Errorf("Soft %v is not a share between 0 and 1", b.Soft))
	}
	if len(errs) > 0 {
		return fmt.Errorf("budget %q: %w", b.Name, errors.Join(errs...))
	}
	return nil
}

func isCurrencyCode(s string) bool {
	return len(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' && s[2] >= 'A' && s[2] <= 'Z'
}

func (b *Budget) covers(tool string, tc ToolConfig, principal string) bool {
	return (b.Tool == "" || b.Tool == tool) && (b.Group == "" || b.Group == tc.Group) && (b.Principal == "" || b.Principal == principal)
}

// window is the period that t falls in: its id (part of the store key)
// and its end.
func (b *Budget) window(t time.Time) (id string, end time.Time) {
	t = t.UTC()
	switch b.Period {
	case PeriodHour:
		start := t.Truncate(time.Hour)
		return start.Format("2006-01-02T15"), start.Add(time.Hour)
	case PeriodDay:
		start := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return start.Format("2006-01-02"), start.AddDate(0, 0, 1)
	default:
		start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start.Format("2006-01"), start.AddDate(0, 1, 0)
	}
}

// BudgetBucket is the JetStream key-value bucket that hooked servers
// share budgets through.
const BudgetBucket = "proofline_budgets"

// OpenBudgetStore binds (creating it if needed) the budget bucket: file
// storage, so budgets survive restarts of the servers and of NATS; one
// value per key; keys of ended periods expire after 35 days.
func OpenBudgetStore(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, BudgetBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BudgetBucket, History: 1, TTL: 35 * 24 * time.Hour,
			Storage: jetstream.FileStorage, Description: "proofline MCP hook budgets: usage per budget and period"})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, BudgetBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("budget bucket %s: %w", BudgetBucket, err)
	}
	return kv, nil
}

// usage is what a budget's calls spent; cost in millionths of the
// currency, so that sums are exact.
type usage struct {
	Calls      int64 `json:"calls"`
	CostMicros int64 `json:"cost_micros"`
}

func (u usage) add(v usage) usage { return usage{u.Calls + v.Calls, u.CostMicros + v.CostMicros} }

func toMicros(amount float64) int64 { return int64(math.Round(amount * 1e6)) }

// counter is one budget's usage in one period (and for one caller, with
// PerPrincipal). shared is the total in the store when last read or
// written; pending what this process spent since and has not yet added
// there.
type counter struct {
	b        *Budget
	key      string
	end      time.Time
	shared   usage
	pending  usage
	loaded   bool
	lastUsed time.Time
}

func (c *counter) total() usage { return c.shared.add(c.pending) }

// share is how much of the budget u uses: the larger of its two caps'.
func (c *counter) share(u usage) float64 {
	s := 0.0
	if c.b.MaxCalls > 0 {
		s = float64(u.Calls) / float64(c.b.MaxCalls)
	}
	if c.b.MaxCost > 0 {
		s = max(s, float64(u.CostMicros)/float64(toMicros(c.b.MaxCost)))
	}
	return s
}

// budgets enforces the hook's budgets. Admission is decided in memory,
// on what the store held at the last sync plus what this process spent
// since: a store round trip per call would cost more than the rest of
// the hook. Every sync interval each counter adds its pending usage to
// the store (compare-and-set on the key's revision, so replicas' adds
// never overwrite each other) and reads the others'. Replicas can
// therefore together overspend by what they admit within one interval;
// a process that crashes loses at most one interval of its own usage.
type budgets struct {
	list []Budget
	kv   jetstream.KeyValue
	sync time.Duration
	log  *slog.Logger
	now  func() time.Time

	mu       sync.Mutex
	counters map[counterKey]*counter
	// windows is each budget's current period, recomputed when it ends.
	windows []period

	soft, refused metric.Int64Counter
	stop          chan struct{}
	done          chan struct{}
}

// maxCounters bounds the counters held: per-caller budgets with many
// callers would otherwise grow without end. Past it, new callers' counters
// are still made; ended periods' are dropped at each sync.
const maxCounters = 100_000

// idleRefresh is how long a counter this process does not use is still
// refreshed from the store at each sync.
const idleRefresh = 30 * time.Second

func newBudgets(list []Budget, tools map[string]ToolConfig, kv jetstream.KeyValue, syncEvery time.Duration, mp metric.MeterProvider, log *slog.Logger) (*budgets, error) {
	list = slices.Clone(list) // defaults are filled in: the caller's config stays as given
	seen := map[string]bool{}
	for i := range list {
		b := &list[i]
		if err := b.Validate(); err != nil {
			return nil, err
		}
		if seen[b.Name] {
			return nil, fmt.Errorf("budget %q is defined twice", b.Name)
		}
		seen[b.Name] = true
		if b.Soft == 0 {
			b.Soft = 0.8
		}
		if b.MaxCost == 0 {
			continue
		}
		for name, tc := range tools {
			if tc.Cost > 0 && b.covers(name, tc, b.Principal) && tc.Currency != b.Currency {
				return nil, fmt.Errorf("budget %q counts cost in %s, and tool %s declares its cost in %q", b.Name, b.Currency, name, tc.Currency)
			}
		}
	}
	if syncEvery <= 0 {
		syncEvery = 200 * time.Millisecond
	}
	m := mp.Meter("github.com/proofline/proofline/ingest/mcphook")
	soft, err := m.Int64Counter("proofline.mcphook.budget.soft", metric.WithDescription("Calls admitted past a budget's soft share, by budget."))
	if err != nil {
		return nil, err
	}
	refused, err := m.Int64Counter("proofline.mcphook.budget.refused", metric.WithDescription("Calls refused because a budget was spent, by budget."))
	if err != nil {
		return nil, err
	}
	bs := &budgets{windows: make([]period, len(list)), list: list, kv: kv, sync: syncEvery, log: log, now: time.Now,
		counters: map[counterKey]*counter{}, soft: soft, refused: refused, stop: make(chan struct{}), done: make(chan struct{})}
	if len(list) > 0 {
		gauge, err := m.Float64ObservableGauge("proofline.mcphook.budget.usage",
			metric.WithDescription("Share of a shared (not per-caller) budget used in its current period, as this process last knew it."))
		if err != nil {
			return nil, err
		}
		if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			bs.mu.Lock()
			defer bs.mu.Unlock()
			now := bs.now()
			for _, c := range bs.counters {
				if !c.b.PerPrincipal && now.Before(c.end) {
					o.ObserveFloat64(gauge, c.share(c.total()), metric.WithAttributes(attribute.String("budget", c.b.Name)))
				}
			}
			return nil
		}, gauge); err != nil {
			return nil, err
		}
		go bs.run()
	} else {
		close(bs.done)
	}
	return bs, nil
}

// budgetRefusal is a call a budget refused.
type budgetRefusal struct {
	name, reason string
}

// maxBudgetsPerCall bounds the budgets one call is counted against
// without allocating; a call covered by more is counted against all of
// them all the same.
const maxBudgetsPerCall = 4

// admitted is what admit spent a call on, to give it back with undo.
type admitted struct {
	bs    *budgets
	cs    [maxBudgetsPerCall]*counter
	more  []*counter
	spend usage
}

func (a *admitted) each(f func(*counter)) {
	for _, c := range a.cs {
		if c != nil {
			f(c)
		}
	}
	for _, c := range a.more {
		f(c)
	}
}

// undo gives back what admit spent, for a call that then did not run.
func (a *admitted) undo() {
	if a.bs == nil {
		return
	}
	a.bs.mu.Lock()
	defer a.bs.mu.Unlock()
	a.each(func(c *counter) { c.pending = c.pending.add(usage{-a.spend.Calls, -a.spend.CostMicros}) })
}

// period is a budget's current calendar window.
type period struct {
	id  string
	end time.Time
}

// counterKey finds a counter: budget index, period id, and the caller
// for per-caller budgets.
type counterKey struct {
	budget    int
	window    string
	principal string
}

// admit decides a call against every budget that covers it and, when
// all have room, spends the call (and its declared cost) on each. marks
// are the record attributes of budgets past their soft share. The common
// case — counters already loaded, no soft mark — takes one lock and
// allocates nothing.
func (bs *budgets) admit(ctx context.Context, tool string, tc ToolConfig, principal string) (adm admitted, marks map[string]string, refused *budgetRefusal) {
	if len(bs.list) == 0 {
		return adm, nil, nil
	}
	now := bs.now()
	adm.spend = usage{Calls: 1}
	if tc.Cost > 0 {
		adm.spend.CostMicros = toMicros(tc.Cost)
	}
	n := 0
	var unloaded []*counter
	bs.mu.Lock()
	for i := range bs.list {
		b := &bs.list[i]
		if !b.covers(tool, tc, principal) {
			continue
		}
		c := bs.counterLocked(i, now, principal)
		if !c.loaded && bs.kv != nil {
			unloaded = append(unloaded, c)
		}
		if n < maxBudgetsPerCall {
			adm.cs[n] = c
		} else {
			adm.more = append(adm.more, c)
		}
		n++
	}
	bs.mu.Unlock()
	if n == 0 {
		return adm, nil, nil
	}
	// A process that starts (or restarts) mid-period must not begin from
	// zero: a counter's first use reads the store.
	for _, c := range unloaded {
		bs.load(ctx, c)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	adm.each(func(c *counter) {
		if refused != nil {
			return
		}
		t := c.total()
		if c.b.MaxCalls > 0 && t.Calls+1 > c.b.MaxCalls {
			refused = &budgetRefusal{name: c.b.Name, reason: fmt.Sprintf("budget %s is spent: %d of %d calls this %s; it renews at %s",
				c.b.Name, t.Calls, c.b.MaxCalls, c.b.Period, c.end.Format(time.RFC3339))}
		} else if c.b.MaxCost > 0 && adm.spend.CostMicros > 0 && t.CostMicros+adm.spend.CostMicros > toMicros(c.b.MaxCost) {
			refused = &budgetRefusal{name: c.b.Name, reason: fmt.Sprintf("budget %s is spent: %s of %s %s this %s, and the call costs %s; it renews at %s",
				c.b.Name, formatAmount(t.CostMicros), formatAmount(toMicros(c.b.MaxCost)), c.b.Currency, c.b.Period, formatAmount(adm.spend.CostMicros), c.end.Format(time.RFC3339))}
		}
	})
	if refused != nil {
		bs.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("budget", refused.name)))
		return admitted{}, nil, refused
	}
	adm.bs = bs
	adm.each(func(c *counter) {
		c.pending = c.pending.add(adm.spend)
		c.lastUsed = now
		if s := c.share(c.total()); s >= c.b.Soft {
			if marks == nil {
				marks = map[string]string{}
			}
			marks["proofline.budget."+c.b.Name] = strconv.FormatFloat(s, 'f', 2, 64)
			bs.soft.Add(ctx, 1, metric.WithAttributes(attribute.String("budget", c.b.Name)))
		}
	})
	return adm, marks, nil
}

// counterLocked returns budget i's counter for now and principal,
// making it (and its store key) on first use. bs.mu is held.
func (bs *budgets) counterLocked(i int, now time.Time, principal string) *counter {
	b := &bs.list[i]
	w := &bs.windows[i]
	if !now.Before(w.end) {
		w.id, w.end = b.window(now)
	}
	k := counterKey{budget: i, window: w.id}
	if b.PerPrincipal {
		k.principal = principal
	}
	c, ok := bs.counters[k]
	if !ok {
		who := "all"
		if b.PerPrincipal {
			// Principals can hold any character; store keys cannot.
			sum := sha256.Sum256([]byte(principal))
			who = hex.EncodeToString(sum[:12])
		}
		c = &counter{b: b, key: "budget." + b.Name + "." + w.id + "." + who, end: w.end}
		bs.counters[k] = c
	}
	return c
}

func formatAmount(micros int64) string { return strconv.FormatFloat(float64(micros)/1e6, 'f', -1, 64) }

// load reads a counter's usage from the store, once. Bounded: with the
// store away, the call goes on with what this process knows, and the next
// sync tries again.
func (bs *budgets) load(ctx context.Context, c *counter) {
	gctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	u, _, err := bs.read(gctx, c.key)
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if err != nil {
		// Not tried again on the call path, which must not wait on a
		// store that is away: the sync loop reads it once it is back.
		bs.log.WarnContext(ctx, "mcphook: budget store unreadable; deciding on this process's usage until it is back", "key", c.key, "err", err)
		c.loaded = true
		return
	}
	if !c.loaded {
		c.shared, c.loaded = u, true
	}
}

// read is the usage stored under key and its revision (0: no key yet).
func (bs *budgets) read(ctx context.Context, key string) (usage, uint64, error) {
	e, err := bs.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return usage{}, 0, nil
	}
	if err != nil {
		return usage{}, 0, err
	}
	var u usage
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		return usage{}, 0, fmt.Errorf("budget %s holds %q: %w", key, e.Value(), err)
	}
	return u, e.Revision(), nil
}

func (bs *budgets) run() {
	defer close(bs.done)
	t := time.NewTicker(bs.sync)
	defer t.Stop()
	for {
		select {
		case <-bs.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			bs.syncAll(ctx)
			cancel()
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), bs.sync*5)
			bs.syncAll(ctx)
			cancel()
		}
	}
}

// syncAll adds each counter's pending usage to the store and reads the
// other replicas' into shared; ended periods' counters are dropped once
// nothing of theirs is pending.
func (bs *budgets) syncAll(ctx context.Context) {
	now := bs.now()
	bs.mu.Lock()
	var work []*counter
	for key, c := range bs.counters {
		idle := c.pending == (usage{})
		if !now.Before(c.end) && idle {
			delete(bs.counters, key)
			continue
		}
		if idle && now.Sub(c.lastUsed) > idleRefresh {
			// Not read every interval while nobody here uses it (a
			// per-caller budget may have many): its next use reads the
			// store again first.
			c.loaded = false
			continue
		}
		work = append(work, c)
	}
	if len(bs.counters) > maxCounters {
		bs.log.Warn("mcphook: more budget counters than expected; per-caller budgets with very many callers", "counters", len(bs.counters))
	}
	bs.mu.Unlock()
	if bs.kv == nil {
		return
	}
	for _, c := range work {
		if err := bs.syncOne(ctx, c); err != nil {
			bs.log.WarnContext(ctx, "mcphook: budget not synced; retrying at the next interval", "key", c.key, "err", err)
		}
	}
}

// syncOne adds c's pending usage to the store with compare-and-set,
// retrying on a concurrent update from another replica.
func (bs *budgets) syncOne(ctx context.Context, c *counter) error {
	for attempt := 0; attempt < 10; attempt++ {
		bs.mu.Lock()
		flush := c.pending
		bs.mu.Unlock()
		stored, rev, err := bs.read(ctx, c.key)
		if err != nil {
			return err
		}
		if flush == (usage{}) {
			bs.mu.Lock()
			c.shared, c.loaded = stored, true
			bs.mu.Unlock()
			return nil
		}
		next := stored.add(flush)
		val, _ := json.Marshal(next)
		if rev == 0 {
			_, err = bs.kv.Create(ctx, c.key, val)
		} else {
			_, err = bs.kv.Update(ctx, c.key, val, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
			continue // another replica wrote first: read again
		}
		if err != nil {
			return err
		}
		bs.mu.Lock()
		c.shared, c.loaded = next, true
		c.pending = c.pending.add(usage{-flush.Calls, -flush.CostMicros})
		bs.mu.Unlock()
		return nil
	}
	return errors.New("ten concurrent updates in a row")
}

// isWrongSequence is the store's answer to an Update whose revision is
// no longer the key's latest.
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// close stops the sync loop after a last sync.
func (bs *budgets) close(ctx context.Context) error {
	select {
	case <-bs.stop:
	default:
		close(bs.stop)
	}
	select {
	case <-bs.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// costOf is the record's cost of a call of a tool with a declared cost.
func costOf(tc ToolConfig) *schemas.Cost {
	if tc.Cost <= 0 {
		return nil
	}
	return &schemas.Cost{Amount: tc.Cost, Currency: tc.Currency}
}
