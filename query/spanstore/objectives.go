package spanstore

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// objectiveUs is an SLO's latency objective in the spans' unit.
func objectiveUs(slo SLO) uint64 { return uint64(slo.LatencyMs * 1000) }

// SyncObjectives makes the SLO rollup (migration 0017) count bad calls
// against slos' latency objectives, so that the error budget and burn
// KPIs read it instead of every span of their windows. When the
// objectives stored differ, it empties the rollup, refills it from the
// spans, and stores the objectives last: a crash part-way leaves them
// unequal, and the next start does it again. Call it before the span
// writer starts (serve does, after Migrate): spans inserted while it
// refills would be counted twice or not at all. On a cluster it does
// nothing, and those KPIs read the spans.
func (s *Store) SyncObjectives(ctx context.Context, slos []SLO) error {
	if s.cfg.Cluster != "" {
		return nil
	}
	want := map[string]uint64{}
	for _, slo := range slos {
		want[slo.Group] = objectiveUs(slo)
	}
	have := map[string]uint64{}
	rows, err := s.conn.Query(ctx, `SELECT tool_group, latency_us FROM slo_objectives`)
	if err != nil {
		return fmt.Errorf("read the SLO objectives: %w", err)
	}
	for rows.Next() {
		var g string
		var us uint64
		if err := rows.Scan(&g, &us); err != nil {
			rows.Close()
			return err
		}
		have[g] = us
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if !maps.Equal(have, want) {
		if err := s.refillObjectives(ctx, want); err != nil {
			return err
		}
		s.log.InfoContext(ctx, "SLO rollup refilled for new objectives", "groups", len(want))
	}
	s.objMu.Lock()
	s.objectives = want
	s.objMu.Unlock()
	return nil
}

func (s *Store) refillObjectives(ctx context.Context, want map[string]uint64) error {
	for _, st := range []string{`TRUNCATE TABLE slo_objectives`, `TRUNCATE TABLE spans_slo_1m`} {
		if err := s.conn.Exec(ctx, st); err != nil {
			return fmt.Errorf("SLO rollup: %w", err)
		}
	}
	if len(want) == 0 {
		return nil
	}
	groups, lats := make([]string, 0, len(want)), make([]uint64, 0, len(want))
	for g, us := range want {
		groups, lats = append(groups, g), append(lats, us)
	}
	// The objectives are not stored yet (they are the completion mark), so
	// the refill takes them as parameters, not from the table.
	p := clickhouse.Parameters{"groups": arrayParam(groups), "lats": uintArrayParam(lats)}
	if err := s.conn.Exec(clickhouse.Context(ctx, clickhouse.WithParameters(p)), `INSERT INTO spans_slo_1m (tool_group, minute, calls, bad)
		SELECT tool_group, toStartOfMinute(ts_start) AS minute, count(),
			countIf(NOT (outcome_status = 'ok' AND latency_us <= transform(tool_group, {groups:Array(String)}, {lats:Array(UInt64)}, toUInt64(0))))
		FROM spans FINAL
		WHERE tool_group IN {groups:Array(String)} AND outcome_status != 'policy_blocked'
		GROUP BY tool_group, minute`); err != nil {
		return fmt.Errorf("SLO rollup refill: %w", err)
	}
	b, err := s.conn.PrepareBatch(ctx, `INSERT INTO slo_objectives (tool_group, latency_us)`)
	if err != nil {
		return fmt.Errorf("store the SLO objectives: %w", err)
	}
	for i := range groups {
		if err := b.Append(groups[i], lats[i]); err != nil {
			return err
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("store the SLO objectives: %w", err)
	}
	return nil
}

// objectivesCover reports whether the SLO rollup counts every SLO of slos
// against its own objective.
func (s *Store) objectivesCover(slos []SLO) bool {
	s.objMu.Lock()
	defer s.objMu.Unlock()
	for _, slo := range slos {
		if us, ok := s.objectives[slo.Group]; !ok || us != objectiveUs(slo) {
			return false
		}
	}
	return len(slos) > 0
}

// budgetCountsRollup is budgetCountsSpans from the SLO rollup: each
// window's whole minutes from spans_slo_1m, and from the spans only the
// seconds before its first whole minute and after the last one before
// now.
func (s *Store) budgetCountsRollup(ctx context.Context, slos []SLO, starts []time.Time, now time.Time) ([][]uint64, error) {
	groups, lats := make([]string, len(slos)), make([]uint64, len(slos))
	for k, slo := range slos {
		groups[k], lats[k] = slo.Group, objectiveUs(slo)
	}
	end := now.Truncate(time.Minute) // the last whole minute ends here
	times := map[string]time.Time{"now": now, "end": end}
	var rollCols, edgeCols, edgeRanges []string
	earliest := end
	for i, st := range starts {
		first := splitWindow(st, end).mfrom // its first whole minute, at most end
		sk, fk := fmt.Sprintf("s%d", i), fmt.Sprintf("f%d", i)
		times[sk], times[fk] = st, first
		earliest = minTime(earliest, first)
		rollCols = append(rollCols, fmt.Sprintf("sumIf(calls, minute >= toDateTime({%s:DateTime64(9, 'UTC')}, 'UTC')), sumIf(bad, minute >= toDateTime({%s:DateTime64(9, 'UTC')}, 'UTC'))", fk, fk))
		in := fmt.Sprintf("ts_start >= {%s:DateTime64(9, 'UTC')} AND ts_start < {%s:DateTime64(9, 'UTC')}", sk, fk)
		edgeCols = append(edgeCols, fmt.Sprintf("countIf(%s), countIf(bad AND %s)", in, in))
		edgeRanges = append(edgeRanges, "("+in+")")
	}
	times["earliest"] = earliest
	p := timeParams(clickhouse.Parameters{"groups": arrayParam(groups), "lats": uintArrayParam(lats)}, times)
	qctx := clickhouse.Context(ctx, clickhouse.WithParameters(p))
	byGroup := map[string][]uint64{}
	read := func(what, q string, cols int) error {
		rows, err := s.query(qctx, q)
		if err != nil {
			return fmt.Errorf("error budget (%s): %w", what, err)
		}
		defer rows.Close()
		for rows.Next() {
			var g string
			vals := make([]uint64, cols)
			dest := []any{&g}
			for i := range vals {
				dest = append(dest, &vals[i])
			}
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			acc := byGroup[g]
			if acc == nil {
				acc = make([]uint64, 2*len(starts))
				byGroup[g] = acc
			}
			for i := range acc {
				acc[i] += vals[i%len(vals)]
			}
		}
		return rows.Err()
	}
	if err := read("rollup", `SELECT tool_group, `+strings.Join(rollCols, ", ")+` FROM spans_slo_1m
		WHERE tool_group IN {groups:Array(String)} AND minute >= toDateTime({earliest:DateTime64(9, 'UTC')}, 'UTC') AND minute < toDateTime({end:DateTime64(9, 'UTC')}, 'UTC')
		GROUP BY tool_group`, 2*len(starts)); err != nil {
		return nil, err
	}
	bad := `NOT (outcome_status = 'ok' AND latency_us <= transform(tool_group, {groups:Array(String)}, {lats:Array(UInt64)}, toUInt64(0)))`
	if err := read("edges", `SELECT tool_group, `+strings.Join(edgeCols, ", ")+` FROM (
			SELECT tool_group, ts_start, `+bad+` AS bad FROM {{spans}} FINAL
			WHERE tool_group IN {groups:Array(String)} AND outcome_status != 'policy_blocked'
				AND (`+strings.Join(edgeRanges, " OR ")+`))
		GROUP BY tool_group`, 2*len(starts)); err != nil {
		return nil, err
	}
	// The seconds after the last whole minute belong to every window.
	if err := read("now", `SELECT tool_group, count(), countIf(`+bad+`) FROM {{spans}} FINAL
		WHERE tool_group IN {groups:Array(String)} AND outcome_status != 'policy_blocked'
			AND ts_start >= {end:DateTime64(9, 'UTC')} AND ts_start < {now:DateTime64(9, 'UTC')}
		GROUP BY tool_group`, 2); err != nil {
		return nil, err
	}
	out := make([][]uint64, len(slos))
	for k, slo := range slos {
		out[k] = byGroup[slo.Group]
		if out[k] == nil {
			out[k] = make([]uint64, 2*len(starts))
		}
	}
	return out, nil
}

// arrayParam and uintArrayParam write arrays as ClickHouse query
// parameters ({name:Array(String)}, {name:Array(UInt64)}). Written here
// because clickhouse-go passes server-side parameters as text and exports
// no formatter for them: an array's text form is ['a','b'], strings
// quoted with ' and \ escaped.
func arrayParam(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	return "[" + strings.Join(q, ",") + "]"
}

func uintArrayParam(v []uint64) string {
	q := make([]string, len(v))
	for i, n := range v {
		q[i] = fmt.Sprint(n)
	}
	return "[" + strings.Join(q, ",") + "]"
}
