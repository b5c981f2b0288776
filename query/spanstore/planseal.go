package spanstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Sealing plans (migrations 0033, 0037). Grouping every plan of a 28-day
// window at query time took a second at 10M spans, though all but the
// last hours' plans can no longer change: a plan is taken to last under
// Config.PlanMaxDuration (the bound), so that long after an hour ends,
// every call of the plans that started in it is in (late calls aside,
// below). SealPlans counts those hours' plans once, per hour of their
// start, into plans_sealed_1h; the plans KPI and its series add those
// counts up and group only the plans since.
//
// The sealed-to hour W moves forward only to the bound before the hour
// that ended half an hour (planSealSlack) before the latest plan call (or
// now, when the latest call is later), so the calls of sealed plans, all
// before W+bound, are at least that old. The number of plan calls in the
// hours before W+bound is kept with W; a call that arrives later (a
// producer delivering late, a replay) changes it, and then the sealed
// counts are not used (planSeal) and SealPlans goes back to the latest
// earlier seal whose count still holds (each seal step leaves a mark with
// its hour, count and tail: migration 0038), or starts over when none
// does. So does a store opened with another bound: the bound is kept
// with W too.
//
// A failed plan's recovery is the start of its workflow's next successful
// plan, which may come much later. A seal resolves the failed plans it
// counts against the successful plans it counts, and the failed plans
// left waiting (plans_open_1h, plans_pending: migration 0033) against
// each later seal's; the query resolves those still waiting against the
// plans it groups itself.

// planSealSlack is how long after the latest plan call the calls of an
// earlier hour are taken to be all in: a producer's delivery delay,
// beyond which a call counts as late (and costs a seal from the start).
const planSealSlack = 30 * time.Minute

// sealTarget is the hour SealPlans seals up to when the latest plan call
// is at latest (see the comment at the top of this file).
func (s *Store) sealTarget(latest time.Time) time.Time {
	return latest.UTC().Add(-planSealSlack).Truncate(time.Hour).Add(-s.cfg.PlanMaxDuration)
}

// planSealChunk bounds one step of a seal, so that sealing a long
// history groups a week of plans at a time.
const planSealChunk = 7 * 24 * time.Hour

// sealedCallsEnd is the end of the hours that hold every call of the
// plans sealed up to w (they started before w and lasted under the
// bound): the plan calls before it are counted with the seal, and a
// change to that count is a late call.
func (s *Store) sealedCallsEnd(w time.Time) time.Time {
	return w.Add(s.cfg.PlanMaxDuration)
}

// planSeal is the sealed state a query can use.
type planSeal struct {
	to time.Time // plans that started before it are sealed
	// tail is the sealed plans (hex of the rollup's plan key) with calls
	// at or after to, which a query grouping from to leaves out.
	tail []string
}

// sealState is a row of plans_seal_state.
type sealState struct {
	to    time.Time // plans that started before it are sealed
	calls uint64    // plan calls before sealedCallsEnd(to) when sealed
	tail  []string  // see planSeal
	bound time.Duration
	// callsNow is the plan calls before sealedCallsEnd(to) now, under
	// this store's bound: calls, unless some arrived late (or the bound
	// is another).
	callsNow uint64
}

// sealState reads plans_seal_state, and the plan calls before the end of
// the sealed plans' hours now, in one query (nil before the first seal).
func (s *Store) sealState(ctx context.Context) (*sealState, error) {
	qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{
		"calls_after_s": strconv.FormatInt(int64(s.cfg.PlanMaxDuration/time.Second), 10), // sealedCallsEnd
	}))
	rows, err := s.query(qctx, `
		SELECT sealed_to, calls, tail, max_plan_s, (
			SELECT sum(calls) FROM plans_calls_1h
			WHERE hour < (SELECT any(sealed_to) FROM plans_seal_state FINAL WHERE id = 1) + toIntervalSecond({calls_after_s:UInt32}))
		FROM plans_seal_state FINAL WHERE id = 1`)
	if err != nil {
		return nil, fmt.Errorf("plan seal state: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var st sealState
	var bound uint32
	if err := rows.Scan(&st.to, &st.calls, &st.tail, &bound, &st.callsNow); err != nil {
		return nil, err
	}
	st.to, st.bound = st.to.UTC(), time.Duration(bound)*time.Second
	return &st, rows.Err()
}

// writeSealState makes w the sealed-to hour, with the plan calls before
// sealedCallsEnd(w) and the plans still going at w.
func (s *Store) writeSealState(ctx context.Context, w time.Time, calls uint64, tail []string) error {
	if err := s.conn.Exec(ctx, `INSERT INTO plans_seal_state (id, sealed_to, calls, tail, max_plan_s, updated) VALUES (1, ?, ?, ?, ?, now64(9))`,
		w, calls, tail, uint32(s.cfg.PlanMaxDuration/time.Second)); err != nil {
		return fmt.Errorf("seal plans: state: %w", err)
	}
	return nil
}

// lastGoodMark is the latest seal mark at or before w (migration 0038)
// made under this store's bound whose count of plan calls still holds:
// no call arrived since in the hours its sealed plans' calls are in, so
// sealing can go on from there. Nil when none does.
func (s *Store) lastGoodMark(ctx context.Context, w time.Time) (*sealState, error) {
	// The plan calls per hour, summed here into the count before each
	// mark's end: a few thousand rows (one an hour), where a correlated
	// subquery per mark is not what this engine does well.
	rows, err := s.query(ctx, `SELECT hour, sum(calls) FROM plans_calls_1h GROUP BY hour ORDER BY hour`)
	if err != nil {
		return nil, fmt.Errorf("plan seal: plan calls per hour: %w", err)
	}
	type hourCalls struct {
		hour  time.Time
		calls uint64
	}
	var hours []hourCalls
	for rows.Next() {
		var h hourCalls
		if err := rows.Scan(&h.hour, &h.calls); err != nil {
			rows.Close()
			return nil, err
		}
		hours = append(hours, h)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, err
	}
	qctx := clickhouse.Context(ctx, clickhouse.WithParameters(timeParams(clickhouse.Parameters{
		"bound_s": strconv.FormatInt(int64(s.cfg.PlanMaxDuration/time.Second), 10),
	}, map[string]time.Time{"w": w})))
	rows, err = s.query(qctx, `SELECT chunk, calls, tail FROM plans_seal_marks
		WHERE max_plan_s = {bound_s:UInt32} AND chunk <= toDateTime({w:DateTime64(9, 'UTC')}, 'UTC')
		ORDER BY chunk DESC`)
	if err != nil {
		return nil, fmt.Errorf("plan seal: marks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m sealState
		if err := rows.Scan(&m.to, &m.calls, &m.tail); err != nil {
			return nil, err
		}
		m.to, m.bound = m.to.UTC(), s.cfg.PlanMaxDuration
		var before uint64
		for _, h := range hours {
			if !h.hour.Before(s.sealedCallsEnd(m.to)) {
				break
			}
			before += h.calls
		}
		if before == m.calls {
			m.callsNow = before
			return &m, rows.Err()
		}
	}
	return nil, rows.Err()
}

// planCallsBefore is the number of plan calls in the hours before t
// (plans_calls_1h, migration 0034).
func (s *Store) planCallsBefore(ctx context.Context, t time.Time) (uint64, error) {
	var n uint64
	qctx := clickhouse.Context(ctx, clickhouse.WithParameters(timeParams(clickhouse.Parameters{}, map[string]time.Time{"t": t})))
	if err := s.queryRow(qctx, `SELECT sum(calls) FROM plans_calls_1h WHERE hour < toDateTime({t:DateTime64(9, 'UTC')}, 'UTC')`).Scan(&n); err != nil {
		return 0, fmt.Errorf("plan calls before %s: %w", t, err)
	}
	return n, nil
}

// planSeal returns the sealed state when a window ending at to can use
// it: sealing runs (not on a cluster), under this store's bound, nothing
// arrived late since, and to is after every call of the sealed plans.
func (s *Store) planSeal(ctx context.Context, to time.Time) (*planSeal, error) {
	if s.cfg.Cluster != "" {
		return nil, nil
	}
	st, err := s.sealState(ctx)
	if err != nil || st == nil || st.bound != s.cfg.PlanMaxDuration || to.Before(s.sealedCallsEnd(st.to)) || st.callsNow != st.calls {
		return nil, err
	}
	return &planSeal{to: st.to, tail: st.tail}, nil
}

// SealPlans counts the plans of every hour that can be sealed and is not
// yet (see the comment at the top of this file). It is idempotent and
// safe to stop at any point: each step records how far it got last, and
// the rows of a step that did not finish are deleted by the next. One
// process seals a store (the span writer's); on a cluster it does
// nothing.
func (s *Store) SealPlans(ctx context.Context) error {
	if s.cfg.Cluster != "" {
		return nil
	}
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	var first, latest time.Time
	var n uint64
	// The latest plan call: the latest first call of a plan in the
	// rollup's latest hour (a little earlier than the latest call, so
	// on the safe side), not after now (a producer's clock ahead).
	if err := s.queryRow(ctx, `SELECT min(hour), count(), (
			SELECT max(start) FROM spans_plans_1h WHERE hour = (SELECT max(hour) FROM spans_plans_1h))
		FROM spans_plans_1h`).Scan(&first, &n, &latest); err != nil {
		return fmt.Errorf("plan rollup's hours: %w", err)
	}
	if n == 0 {
		return nil
	}
	now := time.Now
	if s.clock != nil {
		now = s.clock
	}
	if t := now(); t.Before(latest) {
		latest = t
	}
	target := s.sealTarget(latest)
	st, err := s.sealState(ctx)
	if err != nil {
		return err
	}
	if st != nil {
		restart := ""
		if st.bound != s.cfg.PlanMaxDuration {
			restart = "the plans were sealed under another longest plan duration: sealing again from the start"
			s.log.WarnContext(ctx, restart, "sealed_to", st.to, "sealed_under", st.bound.String(), "now", s.cfg.PlanMaxDuration.String())
		} else if st.callsNow != st.calls {
			back, err := s.lastGoodMark(ctx, st.to)
			if err != nil {
				return err
			}
			if back != nil {
				s.log.WarnContext(ctx, "plan calls arrived after their hours were sealed: sealing again from the last seal before them",
					"sealed_to", st.to, "back_to", back.to, "calls_then", st.calls, "calls_now", st.callsNow)
				if err := s.writeSealState(ctx, back.to, back.calls, back.tail); err != nil {
					return err
				}
				st = back // the rows of later seals are deleted below
			} else {
				restart = "plan calls arrived after their hours were sealed: sealing again from the start"
				s.log.WarnContext(ctx, restart, "sealed_to", st.to, "calls_then", st.calls, "calls_now", st.callsNow)
			}
		}
		if restart != "" {
			for _, t := range []string{"plans_sealed_1h", "plans_open_1h", "plans_pending", "plans_seal_state", "plans_seal_marks"} {
				if err := s.conn.Exec(ctx, "TRUNCATE TABLE "+t); err != nil {
					return fmt.Errorf("plan seal: empty %s: %w", t, err)
				}
			}
			st = nil
		}
	}
	w := first.UTC()
	if st != nil {
		w = st.to
	}
	// A seal that stopped part-way, or one gone back from, left rows
	// past the state's hour.
	qctx := clickhouse.Context(ctx, clickhouse.WithParameters(timeParams(clickhouse.Parameters{}, map[string]time.Time{"w": w})))
	for _, t := range []string{"plans_sealed_1h", "plans_open_1h", "plans_pending", "plans_seal_marks"} {
		const past = ` WHERE chunk > toDateTime({w:DateTime64(9, 'UTC')}, 'UTC')`
		var left uint64
		if err := s.queryRow(qctx, `SELECT count() FROM `+t+past).Scan(&left); err != nil {
			return fmt.Errorf("plan seal: %s: %w", t, err)
		}
		if left == 0 {
			continue // a DELETE is a mutation: none without a reason
		}
		if err := s.conn.Exec(qctx, `DELETE FROM `+t+past); err != nil {
			return fmt.Errorf("plan seal: clean %s: %w", t, err)
		}
	}
	for w.Before(target) {
		b := w.Add(planSealChunk)
		if b.After(target) {
			b = target
		}
		if err := s.sealChunk(ctx, w, b); err != nil {
			return err
		}
		w = b
	}
	return nil
}

// sealChunk seals the plans that started in [a, b), a the sealed-to hour.
func (s *Store) sealChunk(ctx context.Context, a, b time.Time) error {
	// Taken first: a call that arrives while this runs is then seen as
	// late by the next check, not sealed in without being counted.
	calls, err := s.planCallsBefore(ctx, s.sealedCallsEnd(b))
	if err != nil {
		return err
	}
	p := timeParams(clickhouse.Parameters{}, map[string]time.Time{
		"a": a, "b": b, "lo": a.Add(-s.cfg.PlanMaxDuration), "hi": b.Add(s.cfg.PlanMaxDuration), "blo": b.Add(-s.cfg.PlanMaxDuration),
	})
	qctx := clickhouse.Context(ctx, clickhouse.WithParameters(p))
	// failures are this seal's failed plans with a workflow and the
	// earlier ones waiting one by one (old); successes its successful
	// plans with a workflow.
	const failures = `
		SELECT plan, start, wf, first_fail, 0 AS old FROM plans_seal_scratch WHERE bad > 0 AND wf != ''
		UNION ALL
		SELECT plan, any(start), any(wf), any(first_fail), 1 FROM plans_pending
		WHERE chunk <= toDateTime({a:DateTime64(9, 'UTC')}, 'UTC') GROUP BY plan HAVING max(resolved) = 0`
	const successes = `SELECT wf, start FROM plans_seal_scratch WHERE bad = 0 AND wf != ''`
	// matched is each failure with the first success after it, if any.
	const matched = `
		SELECT f.plan AS plan, f.wf AS wf, f.start AS start, f.first_fail AS first_fail, f.old AS old,
			o.start > f.first_fail AS resolved, o.start AS next
		FROM (` + failures + `) AS f
		ASOF LEFT JOIN (` + successes + `) AS o ON f.wf = o.wf AND f.first_fail < o.start`
	// groups are the summed waiting failures, all ended before a: the
	// first success of their workflow in this seal resolves them all.
	const groups = `
		SELECT g.wf AS wf, g.hour AS hour, g.n AS n, g.ff AS ff, ok.first AS first FROM (
			SELECT wf, hour, sum(n) AS n, sum(ff_ms) AS ff FROM plans_open_1h
			WHERE chunk <= toDateTime({a:DateTime64(9, 'UTC')}, 'UTC') GROUP BY wf, hour HAVING n > 0) AS g
		INNER JOIN (SELECT wf, toUnixTimestamp64Milli(min(start)) AS first FROM (` + successes + `) GROUP BY wf) AS ok ON g.wf = ok.wf`
	const chunk = `toDateTime({b:DateTime64(9, 'UTC')}, 'UTC')`
	for i, q := range []string{
		`TRUNCATE TABLE plans_seal_scratch`,
		// The plans that started in [a, b), with every call (they end
		// within the bound).
		`INSERT INTO plans_seal_scratch (plan, wf, start, blocked, failed, bad, first_fail)
		SELECT plan, any(workflow_id), min(start) AS st, sum(blocked), sum(failed), sum(bad), min(first_fail)
		FROM spans_plans_1h
		WHERE hour >= toDateTime({lo:DateTime64(9, 'UTC')}, 'UTC') AND hour < toDateTime({hi:DateTime64(9, 'UTC')}, 'UTC')
		GROUP BY plan
		HAVING st >= {a:DateTime64(9, 'UTC')} AND st < {b:DateTime64(9, 'UTC')}`,
		`INSERT INTO plans_sealed_1h (hour, chunk, plans, policy, system, detect_ms, detected, recover_ms, recovered)
		SELECT toStartOfHour(start) AS h, ` + chunk + `, count(), countIf(blocked > 0), countIf(blocked = 0 AND failed > 0),
			sumIf(dateDiff('millisecond', start, first_fail), blocked + failed > 0), countIf(blocked + failed > 0), 0, 0
		FROM plans_seal_scratch GROUP BY h`,
		// Recoveries found now, one by one. The first successful plan
		// after a failure is in the earliest seal that has one: seals go
		// forward in time.
		`INSERT INTO plans_sealed_1h (hour, chunk, plans, policy, system, detect_ms, detected, recover_ms, recovered)
		SELECT toStartOfHour(start) AS h, ` + chunk + `, 0, 0, 0, 0, 0, sum(dateDiff('millisecond', first_fail, next)), count()
		FROM (` + matched + `) WHERE resolved GROUP BY h`,
		// And of the summed ones (dateDiff in milliseconds is the
		// difference of the Unix milliseconds).
		`INSERT INTO plans_sealed_1h (hour, chunk, plans, policy, system, detect_ms, detected, recover_ms, recovered)
		SELECT hour, ` + chunk + `, 0, 0, 0, 0, 0, sum(n * first - ff), sum(n) FROM (` + groups + `) GROUP BY hour`,
		`INSERT INTO plans_open_1h (wf, hour, chunk, n, ff_ms) SELECT wf, hour, ` + chunk + `, -n, -ff FROM (` + groups + `)`,
		// Failures still waiting that ended before b join the sums; the
		// others wait one by one; those waiting one by one before and
		// resolved or summed now are marked so.
		`INSERT INTO plans_open_1h (wf, hour, chunk, n, ff_ms)
		SELECT wf, toStartOfHour(start) AS h, ` + chunk + `, count(), sum(toUnixTimestamp64Milli(first_fail))
		FROM (` + matched + `) WHERE NOT resolved AND first_fail < {b:DateTime64(9, 'UTC')} GROUP BY wf, h`,
		`INSERT INTO plans_pending (plan, wf, start, first_fail, resolved, chunk)
		SELECT plan, wf, start, first_fail, old, ` + chunk + ` FROM (` + matched + `)
		WHERE old = 0 AND NOT resolved AND first_fail >= {b:DateTime64(9, 'UTC')}
			OR old = 1 AND (resolved OR first_fail < {b:DateTime64(9, 'UTC')})`,
	} {
		if err := s.conn.Exec(qctx, q); err != nil {
			return fmt.Errorf("seal plans of [%s, %s), step %d: %w", a.Format(time.RFC3339), b.Format(time.RFC3339), i+1, err)
		}
	}
	// The sealed plans with calls at or after b.
	var tail []string
	if err := s.conn.QueryRow(qctx, `SELECT groupArray(hex(plan)) FROM (
		SELECT plan FROM spans_plans_1h
		WHERE hour >= toDateTime({blo:DateTime64(9, 'UTC')}, 'UTC') AND hour < toDateTime({hi:DateTime64(9, 'UTC')}, 'UTC')
		GROUP BY plan HAVING min(start) < {b:DateTime64(9, 'UTC')} AND max(hour) >= toDateTime({b:DateTime64(9, 'UTC')}, 'UTC'))`).Scan(&tail); err != nil {
		return fmt.Errorf("seal plans: the plans still going at %s: %w", b, err)
	}
	if err := s.writeSealState(ctx, b, calls, tail); err != nil {
		return err
	}
	// The mark after the state: a mark past the state's hour (a stop in
	// between) is deleted by the next seal.
	if err := s.conn.Exec(ctx, `INSERT INTO plans_seal_marks (chunk, calls, tail, max_plan_s) VALUES (?, ?, ?, ?)`,
		b, calls, tail, uint32(s.cfg.PlanMaxDuration/time.Second)); err != nil {
		return fmt.Errorf("seal plans: mark: %w", err)
	}
	if err := s.conn.Exec(ctx, `TRUNCATE TABLE plans_seal_scratch`); err != nil {
		return fmt.Errorf("seal plans: %w", err)
	}
	s.log.InfoContext(ctx, "plans sealed", "to", b, "still_going", len(tail))
	return nil
}
