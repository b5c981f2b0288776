package spanstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"golang.org/x/sync/errgroup"
)

const paramTime = "2006-01-02 15:04:05.000000000"

func timeParams(p clickhouse.Parameters, names map[string]time.Time) clickhouse.Parameters {
	for k, t := range names {
		p[k] = t.UTC().Format(paramTime)
	}
	return p
}

// OnboardingRow is a tool's onboarding lead time: from its registration
// (when it first appeared in its server's tools/list, from the tool
// catalog) to its first successful call; for a tool the catalog does not
// know, from its first call.
type OnboardingRow struct {
	// Server and Tool are the tool's identity: the same name on two
	// servers is two tools.
	Server        string     `json:"server"`
	Tool          string     `json:"tool"`
	Registered    *time.Time `json:"registered,omitempty"`
	FirstSeen     time.Time  `json:"first_seen"`
	FirstSuccess  *time.Time `json:"first_success,omitempty"`
	LeadTimeHours *float64   `json:"lead_time_hours,omitempty"`
	Calls         uint64     `json:"calls"`
}

// Onboarding reports every tool's onboarding lead time; tools without a
// successful call yet have no lead time.
func (s *Store) Onboarding(ctx context.Context) ([]OnboardingRow, error) {
	// From the onboarding rollup (migration 0014): a few rows per tool,
	// not every span.
	rows, err := s.query(ctx, `SELECT tool_server, tool_name, min(first_call), sum(oks),
		minIfMerge(first_success), sum(calls)
		FROM {{onboarding}} GROUP BY tool_server, tool_name ORDER BY tool_name, tool_server`)
	if err != nil {
		return nil, fmt.Errorf("onboarding query: %w", err)
	}
	defer rows.Close()
	out := []OnboardingRow{}
	for rows.Next() {
		var r OnboardingRow
		var oks uint64
		var first time.Time
		if err := rows.Scan(&r.Server, &r.Tool, &r.FirstSeen, &oks, &first, &r.Calls); err != nil {
			return nil, err
		}
		if oks > 0 {
			r.FirstSuccess = &first
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	registered, err := s.registrations(ctx)
	if err != nil {
		return nil, err
	}
	for i := range out {
		r := &out[i]
		from := r.FirstSeen
		if reg, ok := registered[[2]string{r.Server, r.Tool}]; ok && !reg.After(r.FirstSeen) {
			r.Registered, from = &reg, reg
		}
		if r.FirstSuccess != nil {
			h := r.FirstSuccess.Sub(from).Hours()
			r.LeadTimeHours = &h
		}
	}
	return out, nil
}

// registrations is when each tool (server, name) first appeared in its
// server's tools/list, from the tool catalog (kept beyond the spans'
// retention).
func (s *Store) registrations(ctx context.Context) (map[[2]string]time.Time, error) {
	rows, err := s.query(ctx, `SELECT tool_server, tool_name, min(ts) FROM {{catalog}} FINAL WHERE change != 'removed' GROUP BY tool_server, tool_name`)
	if err != nil {
		return nil, fmt.Errorf("registrations query: %w", err)
	}
	defer rows.Close()
	out := map[[2]string]time.Time{}
	for rows.Next() {
		var server, name string
		var t time.Time
		if err := rows.Scan(&server, &name, &t); err != nil {
			return nil, err
		}
		out[[2]string{server, name}] = t
	}
	return out, rows.Err()
}

// CostReport is the month's spend against the cap.
type CostReport struct {
	Currency       string         `json:"currency"`
	MonthStart     time.Time      `json:"month_start"`
	Total          float64        `json:"total"`
	MonthlyCap     float64        `json:"monthly_cap,omitempty"`
	ProjectedTotal float64        `json:"projected_month_end"`
	OverCap        bool           `json:"projected_over_cap"`
	Workflows      []WorkflowCost `json:"workflows"`
	Anomalies      []CostAnomaly  `json:"anomalies"`
	// WithoutCurrency are this month's amounts that came without a
	// currency: never counted as Currency, reported apart so that they
	// are seen (and the producer fixed).
	WithoutCurrency Unpriced `json:"without_currency"`
}

// Unpriced is what came with an amount but no currency.
type Unpriced struct {
	Calls  uint64  `json:"calls"`
	Amount float64 `json:"amount"`
}

// WorkflowCost is one workflow's spend this month, most expensive first.
type WorkflowCost struct {
	Workflow string  `json:"workflow"`
	Cost     float64 `json:"cost"`
	Calls    uint64  `json:"calls"`
}

// CostAnomaly flags a tool whose cost per call in the last hour is far
// above its baseline (the 7 days before): its own, or for a tool new in
// that time its group's; or a new tool whose last hour alone spent more
// than NewToolCapShare of the monthly cap. Reason says which. A tool is
// its (server, name): the same name on two servers is two tools.
type CostAnomaly struct {
	Server          string  `json:"server,omitempty"`
	Tool            string  `json:"tool"`
	Reason          string  `json:"reason"` // own_baseline, group_baseline or cap_share
	RecentPerCall   float64 `json:"recent_cost_per_call"`
	RecentSpend     float64 `json:"recent_spend"`
	BaselinePerCall float64 `json:"baseline_cost_per_call"`
	RatioToBaseline float64 `json:"ratio"`
}

// CostConfig is the budget the report is held against.
type CostConfig struct {
	Currency      string
	MonthlyCap    float64
	AnomalyFactor float64 // default 3
	// NewToolCapShare flags a tool with no baseline whose last hour spent
	// more than this share of MonthlyCap (default 0.1).
	NewToolCapShare float64
	TopWorkflows    int // default 10
}

// minRatePeriod is the shortest time the cost projection takes a rate
// over.
const minRatePeriod = 24 * time.Hour

// Cost reports this month's spend (UTC calendar month of now): total,
// per workflow, the straight-line projection to month end, and tools
// whose recent cost per call is AnomalyFactor times their baseline.
func (s *Store) Cost(ctx context.Context, cfg CostConfig, now time.Time) (*CostReport, error) {
	if cfg.AnomalyFactor <= 0 {
		cfg.AnomalyFactor = 3
	}
	if cfg.NewToolCapShare <= 0 {
		cfg.NewToolCapShare = 0.1
	}
	if cfg.TopWorkflows <= 0 {
		cfg.TopWorkflows = 10
	}
	now = now.UTC()
	monthStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	monthEnd := monthStart.AddDate(0, 1, 0)
	rep := &CostReport{Currency: cfg.Currency, MonthStart: monthStart, MonthlyCap: cfg.MonthlyCap, Workflows: []WorkflowCost{}, Anomalies: []CostAnomaly{}}
	// The month's and the 7 days' sums, the store's first call, the
	// top workflows and the anomalies are four queries on their own: they
	// run at once (the engine has the second core, and each query costs a
	// few milliseconds before it reads anything).
	d7 := now.Add(-7 * 24 * time.Hour)
	var sums []map[string]costSum
	var first time.Time
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		// The month's total and the amounts without a currency, and the
		// last 7 days' spend, from the cost rollup.
		sums, err = s.costSums(gctx, [2]time.Time{monthStart, now}, [2]time.Time{d7, now})
		return err
	})
	g.Go(func() error {
		// The store's first call, from the onboarding rollup rather than a
		// read of every span. (When it is after now, no span is before now
		// and the 7 days' spend is 0: the projection does not use it.)
		if err := s.queryRow(gctx, `SELECT min(first_call) FROM {{onboarding}}`).Scan(&first); err != nil {
			return fmt.Errorf("the store's first call: %w", err)
		}
		return nil
	})
	g.Go(func() (err error) {
		rep.Workflows, err = s.costWorkflows(gctx, cfg, monthStart, now)
		return err
	})
	g.Go(func() (err error) {
		rep.Anomalies, err = s.costAnomalies(gctx, cfg, now)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	mtd, week := sums[0], sums[1]
	rep.Total = roundNoise(mtd[cfg.Currency].amount)
	rep.WithoutCurrency.Calls, rep.WithoutCurrency.Amount = mtd[""].calls, roundNoise(mtd[""].amount)
	// The projection adds to the month so far the rest of the month at the
	// rate of the last 7 days (across the month's start when needed), not
	// the month's own rate: a few hours into a month, that one multiplies
	// whatever those hours cost by a hundred. When the store's first call
	// is less than 7 days old, the rate is over the time since then, but
	// over a day at least: minutes after a deployment's first call, their
	// spend over those minutes is no rate (it projected 13.50 USD spent in
	// five minutes to 113,000 for the month).
	recent := week[cfg.Currency].amount
	if first.Before(d7) {
		first = d7
	}
	if now.Sub(first) < minRatePeriod {
		first = now.Add(-minRatePeriod)
	}
	rep.ProjectedTotal = rep.Total
	if period := now.Sub(first); recent > 0 && period > 0 {
		rep.ProjectedTotal = roundNoise(rep.ProjectedTotal + recent*float64(monthEnd.Sub(now))/float64(period))
	}
	rep.OverCap = cfg.MonthlyCap > 0 && rep.ProjectedTotal > cfg.MonthlyCap
	return rep, nil
}

// costWorkflows is Cost's top workflows by spend since monthStart.
func (s *Store) costWorkflows(ctx context.Context, cfg CostConfig, monthStart, now time.Time) ([]WorkflowCost, error) {
	p := timeParams(clickhouse.Parameters{"cur": cfg.Currency, "top": fmt.Sprint(cfg.TopWorkflows)},
		map[string]time.Time{"m0": monthStart, "now": now, "hcut": now.Truncate(time.Hour)})
	// The month's workflows: whole hours from the per-workflow rollup, the
	// part-hour before now from spans (the recent ones when they hold it).
	edge := spansHolding(now.Truncate(time.Hour), now)
	rows, err := s.query(clickhouse.Context(ctx, clickhouse.WithParameters(p)), `SELECT workflow_id, sum(a) AS c, sum(n) FROM (
			SELECT workflow_id, amount AS a, calls AS n FROM {{cost_workflow_rollup}}
			WHERE cost_currency = {cur:String} AND hour >= toDateTime({m0:DateTime64(9, 'UTC')}, 'UTC') AND hour < toDateTime({hcut:DateTime64(9, 'UTC')}, 'UTC')
			UNION ALL
			SELECT workflow_id, cost_amount, toUInt64(1) FROM `+edge+` FINAL
			WHERE cost_currency = {cur:String} AND ts_start >= {hcut:DateTime64(9, 'UTC')} AND ts_start < {now:DateTime64(9, 'UTC')})
		GROUP BY workflow_id ORDER BY c DESC, workflow_id LIMIT {top:UInt32}`)
	if err != nil {
		return nil, fmt.Errorf("cost per workflow: %w", err)
	}
	defer rows.Close()
	out := []WorkflowCost{}
	for rows.Next() {
		var w WorkflowCost
		if err := rows.Scan(&w.Workflow, &w.Cost, &w.Calls); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// costAnomalies is Cost's tools whose last hour's cost per call is
// AnomalyFactor times their 7 days' before (or their group's, for a tool
// without its own), and new tools that spent a large share of the cap.
func (s *Store) costAnomalies(ctx context.Context, cfg CostConfig, now time.Time) ([]CostAnomaly, error) {
	h1, d7 := now.Add(-time.Hour), now.Add(-time.Hour-7*24*time.Hour)
	base, last := splitWindow(d7, h1), splitWindow(h1, now)
	out := []CostAnomaly{}
	p := timeParams(clickhouse.Parameters{"cur": cfg.Currency}, map[string]time.Time{"h1": h1, "d7": d7, "now": now,
		"bm0": base.mfrom, "bh0": base.hfrom, "bh1": base.hto, "bm1": base.mto,
		"rm0": last.mfrom, "rh0": last.hfrom, "rh1": last.hto, "rm1": last.mto})
	// Per tool: the last hour's spend and calls, and the 7 days' before;
	// per group: the 7 days' before, the baseline of a tool that has none
	// of its own (a new tool). Each window is cut by splitWindow: whole
	// hours from the per-tool hourly cost rollup, the whole minutes at
	// their edges from the per-tool minute rollup, the seconds from spans.
	// The group's baseline is a window sum over the per-tool rows: one
	// read of them (a WITH … JOIN of the same subquery read them twice).
	rows, err := s.query(clickhouse.Context(ctx, clickhouse.WithParameters(p)), `
		SELECT tool_server, tool_name, rsum, rn, bsum, bn, gsum, gn FROM (
			SELECT tool_server, tool_name, rsum, rn, bsum, bn,
				sum(bsum) OVER (PARTITION BY tool_group) AS gsum, sum(bn) OVER (PARTITION BY tool_group) AS gn
			FROM (
				SELECT tool_group, tool_server, tool_name,
					sumIf(a, recent) AS rsum, sumIf(n, recent) AS rn, sumIf(a, NOT recent) AS bsum, sumIf(n, NOT recent) AS bn
				FROM (
					SELECT tool_group, tool_server, tool_name, hour >= toDateTime({h1:DateTime64(9, 'UTC')}, 'UTC') AS recent, calls AS n, amount AS a
					FROM {{cost_tool_hourly_rollup}}
					WHERE cost_currency = {cur:String}
						AND (hour >= toDateTime({bh0:DateTime64(9, 'UTC')}, 'UTC') AND hour < toDateTime({bh1:DateTime64(9, 'UTC')}, 'UTC')
							OR hour >= toDateTime({rh0:DateTime64(9, 'UTC')}, 'UTC') AND hour < toDateTime({rh1:DateTime64(9, 'UTC')}, 'UTC'))
					UNION ALL
					SELECT tool_group, tool_server, tool_name, minute >= toDateTime({h1:DateTime64(9, 'UTC')}, 'UTC'), calls, amount
					FROM {{cost_tool_rollup}}
					WHERE cost_currency = {cur:String}
						AND (minute >= toDateTime({bm0:DateTime64(9, 'UTC')}, 'UTC') AND minute < toDateTime({bh0:DateTime64(9, 'UTC')}, 'UTC')
							OR minute >= toDateTime({bh1:DateTime64(9, 'UTC')}, 'UTC') AND minute < toDateTime({bm1:DateTime64(9, 'UTC')}, 'UTC')
							OR minute >= toDateTime({rm0:DateTime64(9, 'UTC')}, 'UTC') AND minute < toDateTime({rh0:DateTime64(9, 'UTC')}, 'UTC')
							OR minute >= toDateTime({rh1:DateTime64(9, 'UTC')}, 'UTC') AND minute < toDateTime({rm1:DateTime64(9, 'UTC')}, 'UTC'))
					UNION ALL
					SELECT tool_group, tool_server, tool_name, ts_start >= {h1:DateTime64(9, 'UTC')}, toUInt64(1), cost_amount
					FROM {{spans}} FINAL
					WHERE cost_currency = {cur:String}
						AND (ts_start >= {d7:DateTime64(9, 'UTC')} AND ts_start < {bm0:DateTime64(9, 'UTC')}
							OR ts_start >= {bm1:DateTime64(9, 'UTC')} AND ts_start < {rm0:DateTime64(9, 'UTC')}
							OR ts_start >= {rm1:DateTime64(9, 'UTC')} AND ts_start < {now:DateTime64(9, 'UTC')}))
				GROUP BY tool_group, tool_server, tool_name))
		WHERE rn > 0
		ORDER BY tool_name, tool_server`)
	if err != nil {
		return nil, fmt.Errorf("cost anomalies: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var server, name string
		var rsum, bsum, gsum float64
		var rn, bn, gn uint64
		if err := rows.Scan(&server, &name, &rsum, &rn, &bsum, &bn, &gsum, &gn); err != nil {
			return nil, err
		}
		a := CostAnomaly{Server: server, Tool: name, RecentPerCall: rsum / float64(rn), RecentSpend: rsum}
		switch {
		case bn > 0:
			a.BaselinePerCall, a.Reason = bsum/float64(bn), "own_baseline"
		case gn > 0:
			a.BaselinePerCall, a.Reason = gsum/float64(gn), "group_baseline"
		}
		if a.BaselinePerCall > 0 && a.RecentPerCall > cfg.AnomalyFactor*a.BaselinePerCall {
			a.RatioToBaseline = a.RecentPerCall / a.BaselinePerCall
			out = append(out, a)
			continue
		}
		// A tool with no baseline of its own whose last hour alone spent
		// a large share of the monthly cap.
		if bn == 0 && cfg.MonthlyCap > 0 && rsum > cfg.NewToolCapShare*cfg.MonthlyCap {
			a.Reason, a.RatioToBaseline = "cap_share", 0
			out = append(out, a)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].RatioToBaseline > out[j].RatioToBaseline })
	return out, nil
}

// costSum is the calls with a cost in one currency and their sum.
type costSum struct {
	calls  uint64
	amount float64
}

// costSums is, for each window [from, to), the spend per currency ("" for
// amounts without one) of the calls that started in it: the whole minutes
// from the cost rollup, the seconds before the first and after the last
// from the spans. All windows are one query: in the embedded engine a
// query costs a few milliseconds before it reads anything, and the cost
// KPI asks for two windows.
func (s *Store) costSums(ctx context.Context, windows ...[2]time.Time) ([]map[string]costSum, error) {
	p := clickhouse.Parameters{}
	var parts []string
	for i, w := range windows {
		from, to := w[0], w[1]
		sw := splitWindow(from, to) // the whole minutes, as the latency rollups are read
		k := strconv.Itoa(i)
		p = timeParams(p, map[string]time.Time{"from" + k: from, "to" + k: to, "first" + k: sw.mfrom, "last" + k: sw.mto})
		parts = append(parts, strings.NewReplacer("{i}", k).Replace(`
		SELECT toUInt8({i}) AS w, cost_currency, calls AS n, amount AS a FROM {{cost_rollup}}
		WHERE minute >= toDateTime({first{i}:DateTime64(9, 'UTC')}, 'UTC') AND minute < toDateTime({last{i}:DateTime64(9, 'UTC')}, 'UTC')
		UNION ALL
		SELECT toUInt8({i}), cost_currency, toUInt64(1), cost_amount FROM {{spans}} FINAL
		WHERE cost_amount != 0 AND ((ts_start >= {from{i}:DateTime64(9, 'UTC')} AND ts_start < {first{i}:DateTime64(9, 'UTC')})
			OR (ts_start >= {last{i}:DateTime64(9, 'UTC')} AND ts_start < {to{i}:DateTime64(9, 'UTC')}))`))
	}
	out := make([]map[string]costSum, len(windows))
	for i := range out {
		out[i] = map[string]costSum{}
	}
	if len(windows) == 0 {
		return out, nil
	}
	rows, err := s.query(clickhouse.Context(ctx, clickhouse.WithParameters(p)),
		`SELECT w, cost_currency, sum(n), sum(a) FROM (`+strings.Join(parts, "\n\t\tUNION ALL")+`)
		GROUP BY w, cost_currency`)
	if err != nil {
		return nil, fmt.Errorf("cost sums: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var w uint8
		var cur string
		var c costSum
		if err := rows.Scan(&w, &cur, &c.calls, &c.amount); err != nil {
			return nil, err
		}
		if int(w) < len(out) {
			out[w][cur] = c
		}
	}
	return out, rows.Err()
}

// plansSQL is the plans whose first call is in [{pfrom}, {pto}), a row
// each: workflow (any of its calls'), first call, counts of calls blocked
// by policy, failed (tool_error, system_error, timeout) and not ok, and
// the end of the first call not ok (2262-01-01 when none). Its calls are
// those before {pto}: whole hours from the plan rollup, from {plo}, and
// the part-hour before pto from spans. The plans in {ptail} (hex of the
// plan key: sealed plans still going at the sealed-to hour, which is
// then {plo}) are left out. planParams sets them all.
const plansSQL = `
	SELECT plan, any(wf) AS wf, min(st) AS start, sum(bl) AS blocked, sum(fa) AS failed, sum(ba) AS bad, min(ff) AS first_fail
	FROM (
		SELECT plan, workflow_id AS wf, start AS st, blocked AS bl, failed AS fa, bad AS ba, first_fail AS ff
		FROM {{plans_rollup}}
		WHERE hour >= toDateTime({plo:DateTime64(9, 'UTC')}, 'UTC') AND hour < toDateTime({pcut:DateTime64(9, 'UTC')}, 'UTC')
		UNION ALL
		SELECT sipHash128(plan_id), workflow_id, ts_start, toUInt64(outcome_status = 'policy_blocked'),
			toUInt64(outcome_status IN ('tool_error', 'system_error', 'timeout')), toUInt64(outcome_status != 'ok'),
			if(outcome_status != 'ok', ts_end, toDateTime64('2262-01-01 00:00:00', 9, 'UTC'))
		FROM {{spans}} FINAL
		WHERE plan_id != '' AND ts_start >= {pcut:DateTime64(9, 'UTC')} AND ts_start < {pto:DateTime64(9, 'UTC')})
	{{tail}}
	GROUP BY plan
	HAVING start >= {pfrom:DateTime64(9, 'UTC')} AND start < {pto:DateTime64(9, 'UTC')}`

// plansSQLTo is plansSQL for a window ending at to: the part-hour before
// to is read from the recent spans when they hold it (a read of their
// last granules, where spans is read a granule per tool). Plans in the
// seal's tail are left out by comparing keys, not their hex (a string
// made per row), and not at all when there are none.
func plansSQLTo(to time.Time, seal *planSeal) string {
	tail := ""
	if seal != nil && len(seal.tail) > 0 {
		tail = `WHERE NOT has(arrayMap(x -> CAST(unhex(x) AS FixedString(16)), {ptail:Array(String)}), plan)`
	}
	return strings.NewReplacer("{{spans}}", spansHolding(to.UTC().Truncate(time.Hour), to), "{{tail}}", tail).Replace(plansSQL)
}

// planParams adds plansSQL's parameters for the plans that started in
// [from, to) and are not sealed. With seal, from is at or after the
// sealed-to hour, and the rollup is read from there: a plan that began
// before it is sealed (or in seal's tail).
//
// Without seal, the rollup is read from the bound (Config.PlanMaxDuration)
// before from: a plan counts in the window its first call is in, so one
// that began before the window is not counted in it, as long as it began
// less than the bound before.
func (s *Store) planParams(p clickhouse.Parameters, from, to time.Time, seal *planSeal) clickhouse.Parameters {
	cut := to.UTC().Truncate(time.Hour)
	lo := from.UTC().Truncate(time.Hour).Add(-s.cfg.PlanMaxDuration)
	var tail []string
	if seal != nil {
		lo, tail = seal.to, seal.tail
	}
	p["ptail"] = arrayParam(tail)
	return timeParams(p, map[string]time.Time{"pfrom": from, "pto": to, "plo": lo, "pcut": cut})
}

// PlanWeek is one week of plans (calls sharing a plan_id), by the week of
// the plan's first call. A failed plan counts as a policy block when any
// call was blocked by policy, otherwise as a system error when any call
// failed (tool_error, system_error, timeout).
type PlanWeek struct {
	Week          time.Time `json:"week"`
	Plans         uint64    `json:"plans"`
	PolicyBlocked uint64    `json:"policy_blocked"`
	SystemErrors  uint64    `json:"system_errors"`
	FailedRate    float64   `json:"failed_rate"`
	// MeanTimeToDetectMs is, over failed plans, the mean time from the
	// plan's first call to the end of its first failing call (0 in a week
	// without a failed plan).
	MeanTimeToDetectMs float64 `json:"mean_time_to_detect_ms"`
	// MeanTimeToRecoverMs is, over failed plans whose workflow later ran a
	// successful plan, the mean time from the first failure to the start
	// of that next successful plan; Recovered counts those plans.
	MeanTimeToRecoverMs float64 `json:"mean_time_to_recover_ms"`
	Recovered           uint64  `json:"recovered"`
}

// FailureCause is a top failure cause of a month.
type FailureCause struct {
	Status    string `json:"status"`
	ErrorCode string `json:"error_code"`
	Calls     uint64 `json:"calls"`
}

// PlanReport is the plans KPI.
type PlanReport struct {
	// From is the Monday (00:00 UTC) the oldest week starts on.
	From      time.Time      `json:"from"`
	Weeks     []PlanWeek     `json:"weeks"`
	TopCauses []FailureCause `json:"top_causes_this_month"`
}

// Plans reports failed plans per week (Monday to Monday, UTC) from the
// week holding from, and the top three failure causes of the calendar
// month of now. The oldest week is taken whole: a week cut at from would
// show a failure rate and means over part of it, silently.
func (s *Store) Plans(ctx context.Context, from, now time.Time) (*PlanReport, error) {
	from = from.UTC().Truncate(24 * time.Hour)
	from = from.AddDate(0, 0, -((int(from.Weekday()) + 6) % 7)) // back to Monday
	rep := &PlanReport{From: from, Weeks: []PlanWeek{}, TopCauses: []FailureCause{}}
	// The top causes are read while the weeks are: the engine has the
	// second core for them.
	type causes struct {
		top []FailureCause
		err error
	}
	topc := make(chan causes, 1)
	go func() {
		top, err := s.topCauses(ctx, now)
		topc <- causes{top, err}
	}()
	weeks, err := s.plansByWeek(ctx, from, now)
	tc := <-topc
	if err != nil {
		return nil, err
	}
	if tc.err != nil {
		return nil, tc.err
	}
	for _, w := range weeks {
		rep.Weeks = append(rep.Weeks, w.report())
	}
	rep.TopCauses = append(rep.TopCauses, tc.top...)
	return rep, nil
}

// plansByWeek is Plans' weeks, from the sealed hours where they can be
// used.
func (s *Store) plansByWeek(ctx context.Context, from, now time.Time) ([]*planSums, error) {
	seal, err := s.planSeal(ctx, now)
	if err != nil {
		return nil, err
	}
	if seal != nil && !from.Before(seal.to) {
		seal = nil // nothing sealed in the window
	}
	return s.planWeeks(ctx, from, now, seal)
}

// topCauses is the top three failure causes of the calendar month of now:
// whole hours from the failure rollup (migration 0034), the part-hour
// before now from spans — from the recent spans when it is in them.
func (s *Store) topCauses(ctx context.Context, now time.Time) ([]FailureCause, error) {
	n := now.UTC()
	m0 := time.Date(n.Year(), n.Month(), 1, 0, 0, 0, 0, time.UTC)
	cut := n.Truncate(time.Hour)
	edge := spansHolding(cut, n)
	qctx := clickhouse.Context(ctx, clickhouse.WithParameters(timeParams(clickhouse.Parameters{}, map[string]time.Time{"m0": m0, "cut": cut, "now": n})))
	rows, err := s.query(qctx, `SELECT outcome_status, error_code, sum(n) AS c FROM (
			SELECT outcome_status, error_code, calls AS n FROM {{failures_rollup}}
			WHERE hour >= toDateTime({m0:DateTime64(9, 'UTC')}, 'UTC') AND hour < toDateTime({cut:DateTime64(9, 'UTC')}, 'UTC')
			UNION ALL
			SELECT outcome_status, error_code, toUInt64(1) FROM `+edge+` FINAL
			WHERE outcome_status != 'ok' AND ts_start >= {cut:DateTime64(9, 'UTC')} AND ts_start < {now:DateTime64(9, 'UTC')})
		GROUP BY outcome_status, error_code ORDER BY c DESC, outcome_status, error_code LIMIT 3`)
	if err != nil {
		return nil, fmt.Errorf("top failure causes: %w", err)
	}
	defer rows.Close()
	var out []FailureCause
	for rows.Next() {
		var c FailureCause
		if err := rows.Scan(&c.Status, &c.ErrorCode, &c.Calls); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// planSums is what a week's plans add up to: the sealed hours' counts
// and the plans grouped at query time, summed before the means are taken.
type planSums struct {
	week                  time.Time
	plans, policy, system uint64
	detectMs              int64
	detected              uint64
	recoverMs             int64
	recovered             uint64
}

func (w *planSums) report() PlanWeek {
	r := PlanWeek{Week: w.week, Plans: w.plans, PolicyBlocked: w.policy, SystemErrors: w.system, Recovered: w.recovered,
		FailedRate: ratio(w.policy+w.system, w.plans)}
	// 0, not NaN (which JSON cannot hold), in a week without a failed or
	// recovered plan.
	if w.detected > 0 {
		r.MeanTimeToDetectMs = float64(w.detectMs) / float64(w.detected)
	}
	if w.recovered > 0 {
		r.MeanTimeToRecoverMs = float64(w.recoverMs) / float64(w.recovered)
	}
	return r
}

// noNext is the running minimum's value before any success: no recovery.
const noNext = "0x7fffffffffffffff"

// planWeeks adds up the weeks of [from, to): from the sealed hours before
// seal.to (when seal is set) and from the plans grouped from then on (or
// from from), whose failures, with those of sealed plans still waiting
// for a recovery, are resolved against the plans grouped here.
func (s *Store) planWeeks(ctx context.Context, from, to time.Time, seal *planSeal) ([]*planSums, error) {
	byWeek := map[int64]*planSums{}
	at := func(week time.Time) *planSums {
		w := byWeek[week.Unix()]
		if w == nil {
			w = &planSums{week: week.UTC()}
			byWeek[week.Unix()] = w
		}
		return w
	}
	liveFrom := from
	waiting, sealed := "", ""
	p := clickhouse.Parameters{}
	if seal != nil {
		liveFrom = seal.to
		p = timeParams(p, map[string]time.Time{"from": from, "w": seal.to})
		// The sealed hours' counts and recoveries, in the same query: a
		// round trip less.
		sealed = `
		UNION ALL
		SELECT toMonday(hour) AS week, sum(plans), sum(policy), sum(system), sum(detect_ms), sum(detected), sum(recover_ms), sum(recovered)
		FROM plans_sealed_1h
		WHERE chunk <= toDateTime({w:DateTime64(9, 'UTC')}, 'UTC')
			AND hour >= toDateTime({from:DateTime64(9, 'UTC')}, 'UTC') AND hour < toDateTime({w:DateTime64(9, 'UTC')}, 'UTC')
		GROUP BY week`
		// The sealed failures still waiting are events too (live = 0,
		// counted only as failures to resolve): one by one (pending), and
		// summed per hour (open: all ended before seal.to, so before any
		// plan grouped here started, and the workflow's first successful
		// plan here resolves them all; n failures whose ends add up to ff
		// recover in n·next − ff).
		waiting = `
				UNION ALL
				SELECT any(wf), toMonday(any(start)), 0, 0, 0, 0, 0, 1, toUnixTimestamp64Milli(any(first_fail)) AS ffp, 1, ffp
				FROM plans_pending
				WHERE chunk <= toDateTime({w:DateTime64(9, 'UTC')}, 'UTC') AND start >= {from:DateTime64(9, 'UTC')}
				GROUP BY plan HAVING max(resolved) = 0
				UNION ALL
				SELECT wf, toMonday(hour), 0, 0, 0, 0, 0, 1, toInt64(toUnixTimestamp(hour)) * 1000, sum(n) AS sn, sum(ff_ms)
				FROM plans_open_1h
				WHERE chunk <= toDateTime({w:DateTime64(9, 'UTC')}, 'UTC') AND hour >= toDateTime({from:DateTime64(9, 'UTC')}, 'UTC')
				GROUP BY wf, hour HAVING sn > 0`
	}
	// The plans grouped here give their weeks and, in the same pass, their
	// recoveries (the embedded engine evaluates a CTE once per use, even
	// marked MATERIALIZED, so each use is another grouping of every plan).
	// A failed plan's recovery is the first successful plan of its
	// workflow that started after the failure. An event is a plan (its
	// failure's end when it failed, else its start) or sealed failures
	// still waiting; per workflow, in time order with failures first at
	// the same millisecond when read backwards, a running minimum over
	// the successes' starts is each failure's next success (an ASOF join
	// took twice as long; sorted arrays per workflow, or the plans carried
	// to Go, were slower: bench/RESULTS.md).
	qctx := clickhouse.Context(ctx, clickhouse.WithParameters(s.planParams(p, liveFrom, to, seal)))
	rows, err := s.query(qctx, `
		WITH plans AS (`+plansSQLTo(to, seal)+`)
		SELECT week, toUInt64(sum(live)), toUInt64(sum(pol)), toUInt64(sum(sys)), sum(det), toUInt64(sum(detn)),
			sumIf(n * next - ff, rec), toUInt64(sumIf(n, rec))
		FROM (
			SELECT week, live, pol, sys, det, detn, n, ff, min(if(isfail = 0, t, `+noNext+`)) OVER (
					PARTITION BY wf ORDER BY t DESC, isfail DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS next,
				isfail = 1 AND wf != '' AND next != `+noNext+` AS rec
			FROM (
				SELECT wf, toMonday(start) AS week, toUInt8(1) AS live, toUInt8(blocked > 0) AS pol, toUInt8(blocked = 0 AND failed > 0) AS sys,
					if(blocked + failed > 0, dateDiff('millisecond', start, first_fail), 0) AS det, toUInt8(blocked + failed > 0) AS detn,
					toUInt8(bad > 0) AS isfail, if(bad > 0, toUnixTimestamp64Milli(first_fail), toUnixTimestamp64Milli(start)) AS t,
					toInt64(1) AS n, t AS ff
				FROM plans`+waiting+`))
		GROUP BY week`+sealed)
	if err != nil {
		return nil, fmt.Errorf("plans per week: %w", err)
	}
	// A week's rows: its plans grouped here with their recoveries and the
	// waiting failures of its sealed plans resolved here, and its sealed
	// hours' counts.
	for rows.Next() {
		var r planSums
		if err := rows.Scan(&r.week, &r.plans, &r.policy, &r.system, &r.detectMs, &r.detected, &r.recoverMs, &r.recovered); err != nil {
			rows.Close()
			return nil, err
		}
		w := at(r.week)
		w.plans += r.plans
		w.policy += r.policy
		w.system += r.system
		w.detectMs += r.detectMs
		w.detected += r.detected
		w.recoverMs += r.recoverMs
		w.recovered += r.recovered
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, err
	}
	out := make([]*planSums, 0, len(byWeek))
	for _, w := range byWeek {
		if w.plans > 0 {
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b *planSums) int { return a.week.Compare(b.week) })
	return out, nil
}
