package spanstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"gopkg.in/yaml.v3"
)

// SLO is a tool group's objective: the share of calls that must be good,
// where a good call succeeded within the latency objective. Calls blocked
// by policy are not counted either way: a block is the control plane
// working, not the tool failing.
type SLO struct {
	Group     string  `yaml:"group" json:"group"`
	Target    float64 `yaml:"target" json:"target"`
	LatencyMs float64 `yaml:"latency_ms" json:"latency_ms"`
}

// SLOFile is the --slo configuration file.
type SLOFile struct {
	SLOs []SLO `yaml:"slos"`
}

// LoadSLOs reads and checks an SLO file (YAML).
func LoadSLOs(path string) ([]SLO, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("slo file: %w", err)
	}
	var f SLOFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("slo file %s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, s := range f.SLOs {
		switch {
		case s.Group == "":
			return nil, fmt.Errorf("slo file %s: slos[%d]: group is required", path, i)
		case s.Target <= 0 || s.Target >= 1:
			return nil, fmt.Errorf("slo file %s: slos[%d] (%s): target %v must be between 0 and 1, e.g. 0.99", path, i, s.Group, s.Target)
		case s.LatencyMs <= 0:
			return nil, fmt.Errorf("slo file %s: slos[%d] (%s): latency_ms must be positive", path, i, s.Group)
		case seen[s.Group]:
			return nil, fmt.Errorf("slo file %s: group %s twice", path, s.Group)
		}
		seen[s.Group] = true
	}
	return f.SLOs, nil
}

// BudgetRow is one SLO's error budget.
type BudgetRow struct {
	SLO
	// BurnRate1h and BurnRate6h are the bad-call ratio over the window
	// divided by the allowed ratio (1 − target): 1 spends the budget
	// exactly over the period, above 1 faster.
	BurnRate1h float64 `json:"burn_rate_1h"`
	BurnRate6h float64 `json:"burn_rate_6h"`
	// BudgetLeft is the share of this month's error budget not yet spent
	// (negative when overspent).
	BudgetLeft float64 `json:"budget_left"`
	CallsMonth uint64  `json:"calls_month"`
	BadMonth   uint64  `json:"bad_month"`
	// BurnRates are the burn rates over the windows of the standard
	// multiwindow, multi-burn-rate alerts: 5m, 30m, 1h, 2h, 6h, 1d, 3d.
	BurnRates map[string]float64 `json:"burn_rates"`
	// Firing are the alert pairs whose long and short windows both burn
	// over the pair's rate: "1h/5m" (14.4) and "6h/30m" (6) page,
	// "1d/2h" (3) and "3d/6h" (1) open a ticket.
	Firing []string `json:"firing"`
	// BudgetLeft28d is the share of the budget of the last 28 days (a
	// rolling period, unlike the calendar month) not yet spent.
	BudgetLeft28d float64 `json:"budget_left_28d"`
	Calls28d      uint64  `json:"calls_28d"`
	Bad28d        uint64  `json:"bad_28d"`
}

// burnWindow is a window a burn rate is taken over.
type burnWindow struct {
	name string
	d    time.Duration
}

// burnWindows are the windows of the multiwindow alerts, shortest first.
var burnWindows = []burnWindow{{"5m", 5 * time.Minute}, {"30m", 30 * time.Minute}, {"1h", time.Hour}, {"2h", 2 * time.Hour},
	{"6h", 6 * time.Hour}, {"1d", 24 * time.Hour}, {"3d", 72 * time.Hour}}

// burnAlerts are the standard multiwindow, multi-burn-rate alert pairs
// (Google's SRE workbook, for a 30-day budget).
var burnAlerts = []struct {
	long, short string
	rate        float64
}{{"1h", "5m", 14.4}, {"6h", "30m", 6}, {"1d", "2h", 3}, {"3d", "6h", 1}}

// ErrNoSLOs means no SLO file was configured.
var ErrNoSLOs = errors.New("no SLOs configured (serve --slo FILE)")

// ErrorBudget computes, for each SLO at now, burn rates over the
// multiwindow alerts' windows, which alert pairs fire, and the budget
// left this calendar month and over the last 28 days.
func (s *Store) ErrorBudget(ctx context.Context, slos []SLO, now time.Time) ([]BudgetRow, error) {
	if len(slos) == 0 {
		return nil, ErrNoSLOs
	}
	now = now.UTC()
	m0 := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	// Where each window starts; each ends at now: the burn windows, then
	// the month and the 28 days.
	starts := make([]time.Time, 0, len(burnWindows)+2)
	for _, w := range burnWindows {
		starts = append(starts, now.Add(-w.d))
	}
	starts = append(starts, m0, now.Add(-28*24*time.Hour))
	var counts [][]uint64
	var err error
	if s.objectivesCover(slos) {
		counts, err = s.budgetCountsRollup(ctx, slos, starts, now)
	} else {
		counts, err = s.budgetCountsSpans(ctx, slos, starts, now)
	}
	if err != nil {
		return nil, err
	}
	out := make([]BudgetRow, 0, len(slos))
	for k, slo := range slos {
		c := counts[k]
		allowed := 1 - slo.Target
		r := BudgetRow{SLO: slo, BurnRates: map[string]float64{}, Firing: []string{}}
		for i, w := range burnWindows {
			r.BurnRates[w.name] = burn(c[2*i+1], c[2*i], slo.Target)
		}
		n := len(burnWindows)
		r.CallsMonth, r.BadMonth = c[2*n], c[2*n+1]
		r.Calls28d, r.Bad28d = c[2*n+2], c[2*n+3]
		r.BurnRate1h, r.BurnRate6h = r.BurnRates["1h"], r.BurnRates["6h"]
		r.BudgetLeft = roundNoise(1 - ratio(r.BadMonth, r.CallsMonth)/allowed)
		r.BudgetLeft28d = roundNoise(1 - ratio(r.Bad28d, r.Calls28d)/allowed)
		for _, a := range burnAlerts {
			if r.BurnRates[a.long] > a.rate && r.BurnRates[a.short] > a.rate {
				r.Firing = append(r.Firing, a.long+"/"+a.short)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// budgetCountsSpans counts, per SLO and window [starts[i], now), the calls
// and the bad ones by reading the group's spans: counts[slo] is calls and
// bad for each window in turn.
func (s *Store) budgetCountsSpans(ctx context.Context, slos []SLO, starts []time.Time, now time.Time) ([][]uint64, error) {
	// One countIf pair per window, each a fixed fragment naming its
	// parameter: no request text reaches the SQL.
	times := map[string]time.Time{"now": now}
	earliest := now
	var cols []string
	for i, st := range starts {
		key := fmt.Sprintf("w%d", i)
		times[key] = st
		earliest = minTime(earliest, st)
		cols = append(cols, fmt.Sprintf("countIf(ts_start >= {%s:DateTime64(9, 'UTC')}), countIf(bad AND ts_start >= {%s:DateTime64(9, 'UTC')})", key, key))
	}
	times["earliest"] = earliest
	q := `SELECT ` + strings.Join(cols, ", ") + `
		FROM (
			SELECT ts_start, NOT (outcome_status = 'ok' AND latency_us <= {lat:UInt64}) AS bad
			FROM {{spans}} FINAL
			WHERE tool_group = {grp:String} AND outcome_status != 'policy_blocked'
				AND ts_start >= {earliest:DateTime64(9, 'UTC')} AND ts_start < {now:DateTime64(9, 'UTC')})`
	out := make([][]uint64, len(slos))
	for k, slo := range slos {
		p := timeParams(clickhouse.Parameters{"grp": slo.Group, "lat": fmt.Sprint(objectiveUs(slo))}, times)
		counts := make([]uint64, 2*len(starts))
		dest := make([]any, len(counts))
		for i := range counts {
			dest[i] = &counts[i]
		}
		if err := s.queryRow(clickhouse.Context(ctx, clickhouse.WithParameters(p)), q).Scan(dest...); err != nil {
			return nil, fmt.Errorf("error budget %s: %w", slo.Group, err)
		}
		out[k] = counts
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// burn is the burn rate of bad calls out of calls against a target:
// the bad share over the allowed one, rounded (1 − 0.99 is not 0.01 in
// binary, and 10 read as 9.999999999999991).
func burn(bad, calls uint64, target float64) float64 {
	return roundNoise(ratio(bad, calls) / (1 - target))
}

// roundNoise rounds x to 9 decimals: below what any figure here means
// (a millionth of a cent, a billionth of a burn rate), above the noise
// of float sums and quotients.
func roundNoise(x float64) float64 {
	return math.Round(x*1e9) / 1e9
}
