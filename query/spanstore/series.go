package spanstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// MaxSeriesPoints bounds the steps of one series query.
const MaxSeriesPoints = 10_000

// Series is a KPI over time: one point per step of [From, To).
type Series struct {
	From time.Time     `json:"from"`
	To   time.Time     `json:"to"`
	Step time.Duration `json:"-"`
	// StepSeconds is Step for JSON clients.
	StepSeconds int64 `json:"step_seconds"`
}

// AlignSeries checks a series' range and step and aligns the range to
// whole steps (counted from the Unix epoch, so that a step of a day
// starts at midnight UTC): from moves back, to moves forward.
func AlignSeries(from, to time.Time, step time.Duration) (Series, error) {
	if step < time.Minute || step%time.Minute != 0 {
		return Series{}, fmt.Errorf("step %s: want whole minutes, at least 1m", step)
	}
	if !from.Before(to) {
		return Series{}, errors.New("from must be before to")
	}
	s := int64(step / time.Second)
	f := from.Unix() - mod(from.Unix(), s)
	t := to.Unix()
	if r := mod(t, s); r != 0 || to.Nanosecond() != 0 {
		t += s - r
	}
	if n := (t - f) / s; n > MaxSeriesPoints {
		return Series{}, fmt.Errorf("%d steps of %s: at most %d", n, step, MaxSeriesPoints)
	}
	return Series{From: time.Unix(f, 0).UTC(), To: time.Unix(t, 0).UTC(), Step: step, StepSeconds: s}, nil
}

func mod(a, b int64) int64 { return ((a % b) + b) % b }

// params adds to p what every series query binds: {from}, {to} and, for
// the step index intDiv(t − {from_unix}, {step}), the step and the start.
func (s Series) params(p clickhouse.Parameters) clickhouse.Parameters {
	if p == nil {
		p = clickhouse.Parameters{}
	}
	p["step"], p["from_unix"] = fmt.Sprint(s.StepSeconds), fmt.Sprint(s.From.Unix())
	return timeParams(p, map[string]time.Time{"from": s.From, "to": s.To})
}

// start is when step b of the series starts.
func (s Series) start(b int64) time.Time { return s.From.Add(time.Duration(b) * s.Step) }

// LatencyPoint is one step of one tool's (or group's) latency.
type LatencyPoint struct {
	Start time.Time `json:"start"`
	Calls uint64    `json:"calls"`
	P50ms float64   `json:"p50_ms"`
	P95ms float64   `json:"p95_ms"`
	P99ms float64   `json:"p99_ms"`
}

// LatencySeries is one key's points; steps without calls are left out.
type LatencySeries struct {
	Server string         `json:"server,omitempty"`
	Key    string         `json:"key"`
	Points []LatencyPoint `json:"points"`
}

// LatencySeries returns p50/p95/p99 latency per tool or group per step
// of s. From the rollups — per hour when the step is whole hours, else
// per minute — summing each step's histograms (quantiles within
// LatencyAccuracy); with exact, from every span. s must come from
// AlignSeries: its steps then fall on the rollups' buckets, and no step
// needs the spans at its edges.
func (st *Store) LatencySeries(ctx context.Context, by string, s Series, exact bool) ([]LatencySeries, error) {
	g, ok := groupColumns[by]
	if !ok {
		return nil, fmt.Errorf("by=%q: want tool or group", by)
	}
	params := s.params(nil)
	var sql string
	switch {
	case exact:
		sql = `SELECT ` + g.server + ` AS srv, ` + g.key + ` AS key, intDiv(toUnixTimestamp(ts_start) - {from_unix:Int64}, {step:Int64}) AS b, count(),
			quantileExact(0.5)(latency_us) / 1000, quantileExact(0.95)(latency_us) / 1000, quantileExact(0.99)(latency_us) / 1000
		FROM {{spans}} FINAL
		WHERE ts_start >= {from:DateTime64(9, 'UTC')} AND ts_start < {to:DateTime64(9, 'UTC')} AND ` + ranCalls + `
		GROUP BY srv, key, b ORDER BY key, srv, b`
	default:
		table, ts := "{{latency_rollup_1m}}", "minute"
		if s.Step%time.Hour == 0 && s.From.Unix()%3600 == 0 {
			table, ts = "{{latency_rollup_1h}}", "hour"
		}
		// The quantiles are read off each step's summed histogram by the
		// engine (histogramQuantilesSQL), not sent as maps to be read here:
		// at 50 tools over a week of hours, decoding 8,400 histograms took
		// most of the half second the series took. A step's histograms are
		// gathered with groupArray and summed with arrayReduce only when
		// there are several: a step of the rollup's own size is mostly one
		// row, and sumMap building a map per step (8,400 at 50 tools over
		// a week of hours) took twice as long as the whole query does now.
		sql = `SELECT srv, key, b, n, ` + histogramQuantilesSQL("h", "n") + ` FROM (
			SELECT ` + g.server + ` AS srv, ` + g.key + ` AS key, intDiv(toUnixTimestamp(` + ts + `) - {from_unix:Int64}, {step:Int64}) AS b,
				sum(calls) AS n, groupArray(latency_hist) AS hs, if(length(hs) = 1, hs[1], arrayReduce('sumMap', hs)) AS h
			FROM ` + table + `
			WHERE ` + ts + ` >= {from:DateTime64(9, 'UTC')} AND ` + ts + ` < {to:DateTime64(9, 'UTC')}
			GROUP BY srv, key, b HAVING n > 0)
		ORDER BY key, srv, b`
	}
	rows, err := st.query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), sql)
	if err != nil {
		return nil, fmt.Errorf("latency series query: %w", err)
	}
	defer rows.Close()
	out := []LatencySeries{}
	for rows.Next() {
		var srv, key string
		var b int64
		var p LatencyPoint
		if exact {
			if err := rows.Scan(&srv, &key, &b, &p.Calls, &p.P50ms, &p.P95ms, &p.P99ms); err != nil {
				return nil, err
			}
		} else {
			var q50, q95, q99 float64
			if err := rows.Scan(&srv, &key, &b, &p.Calls, &q50, &q95, &q99); err != nil {
				return nil, err
			}
			p.P50ms, p.P95ms, p.P99ms = math.Round(q50)/1000, math.Round(q95)/1000, math.Round(q99)/1000
		}
		p.Start = s.start(b)
		if len(out) == 0 || out[len(out)-1].Key != key || out[len(out)-1].Server != srv {
			out = append(out, LatencySeries{Server: srv, Key: key})
		}
		out[len(out)-1].Points = append(out[len(out)-1].Points, p)
	}
	return out, rows.Err()
}

// BurnPoint is one step of an SLO's error budget: its calls (policy
// blocks not counted), the bad ones, and the burn rate — the bad share
// over the allowed one (1 − target): 1 spends the budget exactly over
// the period, above 1 faster.
type BurnPoint struct {
	Start    time.Time `json:"start"`
	Calls    uint64    `json:"calls"`
	Bad      uint64    `json:"bad"`
	BurnRate float64   `json:"burn_rate"`
}

// BurnSeries is one SLO's points; steps without calls are left out.
type BurnSeries struct {
	Group  string      `json:"group"`
	Points []BurnPoint `json:"points"`
}

// BurnSeries returns each SLO's burn rate per step of s (from AlignSeries),
// from the spans: a call is bad unless it succeeded within the latency
// objective, as for ErrorBudget.
func (st *Store) BurnSeries(ctx context.Context, slos []SLO, s Series) ([]BurnSeries, error) {
	if len(slos) == 0 {
		return nil, ErrNoSLOs
	}
	if st.objectivesCover(slos) {
		return st.burnSeriesRollup(ctx, slos, s)
	}
	out := make([]BurnSeries, 0, len(slos))
	for _, slo := range slos {
		params := s.params(clickhouse.Parameters{"grp": slo.Group, "lat": fmt.Sprint(objectiveUs(slo))})
		rows, err := st.query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), `
			SELECT intDiv(toUnixTimestamp(ts_start) - {from_unix:Int64}, {step:Int64}) AS b, count(),
				countIf(NOT (outcome_status = 'ok' AND latency_us <= {lat:UInt64}))
			FROM {{spans}} FINAL
			WHERE tool_group = {grp:String} AND outcome_status != 'policy_blocked'
				AND ts_start >= {from:DateTime64(9, 'UTC')} AND ts_start < {to:DateTime64(9, 'UTC')}
			GROUP BY b ORDER BY b`)
		if err != nil {
			return nil, fmt.Errorf("burn series %s: %w", slo.Group, err)
		}
		ser := BurnSeries{Group: slo.Group, Points: []BurnPoint{}}
		for rows.Next() {
			var b int64
			var p BurnPoint
			if err := rows.Scan(&b, &p.Calls, &p.Bad); err != nil {
				rows.Close()
				return nil, err
			}
			p.Start = s.start(b)
			p.BurnRate = burn(p.Bad, p.Calls, slo.Target)
			ser.Points = append(ser.Points, p)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, ser)
	}
	return out, nil
}

// burnSeriesRollup is BurnSeries from the SLO rollup: the series' steps
// are whole minutes from the epoch (AlignSeries), so every step is whole
// minutes of the rollup and no span needs reading.
func (st *Store) burnSeriesRollup(ctx context.Context, slos []SLO, s Series) ([]BurnSeries, error) {
	groups := make([]string, len(slos))
	for k, slo := range slos {
		groups[k] = slo.Group
	}
	params := s.params(clickhouse.Parameters{"groups": arrayParam(groups)})
	rows, err := st.query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), `
		SELECT tool_group, intDiv(toUnixTimestamp(minute) - {from_unix:Int64}, {step:Int64}) AS b, sum(calls) AS n, sum(bad)
		FROM spans_slo_1m
		WHERE tool_group IN {groups:Array(String)}
			AND minute >= toDateTime({from:DateTime64(9, 'UTC')}, 'UTC') AND minute < toDateTime({to:DateTime64(9, 'UTC')}, 'UTC')
		GROUP BY tool_group, b HAVING n > 0 ORDER BY tool_group, b`)
	if err != nil {
		return nil, fmt.Errorf("burn series: %w", err)
	}
	defer rows.Close()
	points := map[string][]BurnPoint{}
	for rows.Next() {
		var g string
		var b int64
		var p BurnPoint
		if err := rows.Scan(&g, &b, &p.Calls, &p.Bad); err != nil {
			return nil, err
		}
		p.Start = s.start(b)
		points[g] = append(points[g], p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]BurnSeries, 0, len(slos))
	for _, slo := range slos {
		ser := BurnSeries{Group: slo.Group, Points: []BurnPoint{}}
		for _, p := range points[slo.Group] {
			p.BurnRate = burn(p.Bad, p.Calls, slo.Target)
			ser.Points = append(ser.Points, p)
		}
		out = append(out, ser)
	}
	return out, nil
}

// CostPoint is one step's spend in the report's currency.
type CostPoint struct {
	Start  time.Time `json:"start"`
	Calls  uint64    `json:"calls"`
	Amount float64   `json:"amount"`
}

// CostSeries returns the spend in currency per step of s (from
// AlignSeries); steps without spend are left out. Amounts in other
// currencies, or without one, are not added in.
func (st *Store) CostSeries(ctx context.Context, currency string, s Series) ([]CostPoint, error) {
	params := s.params(clickhouse.Parameters{"cur": currency})
	rows, err := st.query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), `
		SELECT intDiv(toUnixTimestamp(minute) - {from_unix:Int64}, {step:Int64}) AS b, sum(calls) AS n, sum(amount)
		FROM {{cost_rollup}}
		WHERE cost_currency = {cur:String}
			AND minute >= toDateTime({from:DateTime64(9, 'UTC')}, 'UTC') AND minute < toDateTime({to:DateTime64(9, 'UTC')}, 'UTC')
		GROUP BY b HAVING n > 0 ORDER BY b`)
	if err != nil {
		return nil, fmt.Errorf("cost series: %w", err)
	}
	defer rows.Close()
	out := []CostPoint{}
	for rows.Next() {
		var b int64
		var p CostPoint
		if err := rows.Scan(&b, &p.Calls, &p.Amount); err != nil {
			return nil, err
		}
		p.Start, p.Amount = s.start(b), roundNoise(p.Amount)
		out = append(out, p)
	}
	return out, rows.Err()
}

// PlanPoint is one step's plans (by the start of their first call) and
// how many failed, split into blocked by policy and failed otherwise.
type PlanPoint struct {
	Start         time.Time `json:"start"`
	Plans         uint64    `json:"plans"`
	PolicyBlocked uint64    `json:"policy_blocked"`
	SystemErrors  uint64    `json:"system_errors"`
	FailedRate    float64   `json:"failed_rate"`
}

// PlanSeries returns the plans per step of s (from AlignSeries), as the
// plans KPI counts them; steps without plans are left out. With steps of
// whole hours, the sealed hours' counts are added up (see SealPlans) and
// only the plans since are grouped.
func (st *Store) PlanSeries(ctx context.Context, s Series) ([]PlanPoint, error) {
	seal, err := st.planSeal(ctx, s.To)
	if err != nil {
		return nil, err
	}
	if seal != nil && (s.Step%time.Hour != 0 || !s.From.Before(seal.to)) {
		seal = nil
	}
	byStep := map[int64]*PlanPoint{}
	add := func(b int64, plans, policy, system uint64) {
		p := byStep[b]
		if p == nil {
			p = &PlanPoint{Start: s.start(b)}
			byStep[b] = p
		}
		p.Plans += plans
		p.PolicyBlocked += policy
		p.SystemErrors += system
	}
	scan := func(q string, params clickhouse.Parameters) error {
		rows, err := st.query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), q)
		if err != nil {
			return fmt.Errorf("plan series: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var b int64
			var plans, policy, system uint64
			if err := rows.Scan(&b, &plans, &policy, &system); err != nil {
				return err
			}
			add(b, plans, policy, system)
		}
		return rows.Err()
	}
	liveFrom := s.From
	if seal != nil {
		liveFrom = seal.to
		p := timeParams(s.params(nil), map[string]time.Time{"w": seal.to})
		if err := scan(`SELECT intDiv(toUnixTimestamp(hour) - {from_unix:Int64}, {step:Int64}) AS b, sum(plans), sum(policy), sum(system)
			FROM plans_sealed_1h
			WHERE chunk <= toDateTime({w:DateTime64(9, 'UTC')}, 'UTC')
				AND hour >= toDateTime({from:DateTime64(9, 'UTC')}, 'UTC') AND hour < toDateTime({w:DateTime64(9, 'UTC')}, 'UTC')
			GROUP BY b`, p); err != nil {
			return nil, err
		}
	}
	if err := scan(`
		SELECT intDiv(toUnixTimestamp(start) - {from_unix:Int64}, {step:Int64}) AS b, count(),
			countIf(blocked > 0), countIf(blocked = 0 AND failed > 0)
		FROM (`+plansSQLTo(s.To, seal)+`)
		GROUP BY b`, st.planParams(s.params(nil), liveFrom, s.To, seal)); err != nil {
		return nil, err
	}
	out := []PlanPoint{}
	for _, p := range byStep {
		if p.Plans > 0 {
			p.FailedRate = ratio(p.PolicyBlocked+p.SystemErrors, p.Plans)
			out = append(out, *p)
		}
	}
	slices.SortFunc(out, func(a, b PlanPoint) int { return a.Start.Compare(b.Start) })
	return out, nil
}
