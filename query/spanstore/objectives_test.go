package spanstore

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// TestSLORollupMatchesSpans: with the objectives synced, the error budget
// and burn series come from the SLO rollup (and the seconds at the
// windows' edges from spans) and equal, number for number, what the
// spans alone give — on calls at the objective to the microsecond, one
// microsecond over, failing, blocked by policy, in a group without an
// SLO, at seconds off the minute around every window's edge; before and
// after more calls arrive through the view, and after the objectives
// change (the rollup refilled).
func TestSLORollupMatchesSpans(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if err := s.conn.Exec(ctx, "TRUNCATE TABLE spans_slo_1m"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Minute).Add(-17 * time.Second)
	var calls []call
	n := 0
	add := func(group string, at time.Time, dur time.Duration, status string) {
		calls = append(calls, call{id: fmt.Sprintf("o-%d", n), tool: "t-" + group, group: group, start: at, dur: dur, status: status})
		n++
	}
	// Around each window's start (now − 5m … now − 3d), the month's start
	// and now − 28d, a second either side; and every minute of the last
	// ten, and the seconds since the last whole minute.
	edges := []time.Duration{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour, 28 * 24 * time.Hour}
	m0 := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	var ats []time.Time
	for _, e := range edges {
		ats = append(ats, now.Add(-e-time.Second), now.Add(-e), now.Add(-e+time.Second))
	}
	ats = append(ats, m0.Add(-time.Second), m0, m0.Add(time.Second))
	for i := 0; i < 10; i++ {
		ats = append(ats, now.Add(-time.Duration(i)*time.Minute-3*time.Second))
	}
	ats = append(ats, now.Add(-time.Second), now.Truncate(time.Minute).Add(time.Second))
	for i, at := range ats {
		for _, g := range []string{"a", "b", "nobody"} {
			add(g, at, 100*time.Millisecond, "")                  // at a's objective exactly: good
			add(g, at, 100*time.Millisecond+time.Microsecond, "") // 1 µs over a's: bad for a
			add(g, at, 40*time.Millisecond, []string{"tool_error", "timeout", "policy_blocked"}[i%3])
			add(g, at.Add(time.Millisecond), 60*time.Millisecond, "") // over b's 50 ms
		}
	}
	insertCalls(t, s, calls)
	slos := []SLO{{Group: "a", Target: 0.99, LatencyMs: 100}, {Group: "b", Target: 0.9, LatencyMs: 50}}
	series, err := AlignSeries(now.Add(-4*24*time.Hour), now.Add(time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	minutes, _ := AlignSeries(now.Add(-15*time.Minute), now.Add(time.Minute), 5*time.Minute)
	check := func(what string, slos []SLO) {
		t.Helper()
		if !s.objectivesCover(slos) {
			t.Fatalf("%s: the rollup does not cover %+v", what, slos)
		}
		fastB, err := s.ErrorBudget(ctx, slos, now)
		if err != nil {
			t.Fatal(err)
		}
		fastS, err := s.BurnSeries(ctx, slos, series)
		if err != nil {
			t.Fatal(err)
		}
		fastM, err := s.BurnSeries(ctx, slos, minutes)
		if err != nil {
			t.Fatal(err)
		}
		s.objMu.Lock()
		saved := s.objectives
		s.objectives = nil // the spans path
		s.objMu.Unlock()
		slowB, err1 := s.ErrorBudget(ctx, slos, now)
		slowS, err2 := s.BurnSeries(ctx, slos, series)
		slowM, err3 := s.BurnSeries(ctx, slos, minutes)
		s.objMu.Lock()
		s.objectives = saved
		s.objMu.Unlock()
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatal(err1, err2, err3)
		}
		if !reflect.DeepEqual(fastB, slowB) {
			t.Errorf("%s: error budget from the rollup\n%+v\nfrom spans\n%+v", what, fastB, slowB)
		}
		if !reflect.DeepEqual(fastS, slowS) || !reflect.DeepEqual(fastM, slowM) {
			t.Errorf("%s: burn series from the rollup\n%+v %+v\nfrom spans\n%+v %+v", what, fastS, fastM, slowS, slowM)
		}
		if fastB[0].CallsMonth == 0 || fastB[0].BadMonth == 0 || fastB[1].Calls28d == 0 {
			t.Fatalf("%s: the fixture counted nothing: %+v", what, fastB)
		}
	}
	// Synced after the spans are in: the refill counts them.
	if err := s.SyncObjectives(ctx, slos); err != nil {
		t.Fatal(err)
	}
	check("refilled", slos)
	// More calls, through the view.
	calls = nil
	for _, at := range ats[len(ats)-8:] {
		for _, g := range []string{"a", "b"} {
			add(g, at.Add(2*time.Millisecond), 100*time.Millisecond, "") // at a's objective: good for a
			add(g, at.Add(2*time.Millisecond), 50*time.Millisecond, "")  // at b's: good for both
			add(g, at.Add(2*time.Millisecond), 50*time.Millisecond+time.Microsecond, "")
			add(g, at.Add(2*time.Millisecond), 10*time.Millisecond, "system_error")
		}
	}
	insertCalls(t, s, calls)
	check("after inserts", slos)
	// A restart with the same objectives keeps the rollup; new ones
	// refill it.
	if err := s.SyncObjectives(ctx, slos); err != nil {
		t.Fatal(err)
	}
	check("same objectives", slos)
	changed := []SLO{{Group: "a", Target: 0.99, LatencyMs: 60}, {Group: "nobody", Target: 0.5, LatencyMs: 100}}
	if s.objectivesCover(changed) {
		t.Fatal("the rollup claims to cover objectives it was not synced to")
	}
	if err := s.SyncObjectives(ctx, changed); err != nil {
		t.Fatal(err)
	}
	check("changed objectives", changed)
}

// TestCostRollupMatchesSpans: the cost rollup plus the spans at the edges
// give the spend per currency of any range — a minute's seconds, across
// minutes, a week — and the series per step, as summing the spans does:
// calls exactly, amounts to rounding; zero amounts are no calls with a
// cost, and amounts without a currency are their own ("").
func TestCostRollupMatchesSpans(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	now := time.Now().UTC().Truncate(time.Minute).Add(-23 * time.Second)
	var calls []call
	for i := 0; i < 400; i++ {
		at := now.Add(-time.Duration(i*i) * 997 * time.Millisecond)
		cur := []string{"", "USD", "EUR", "-", "USD"}[i%5] // "" is USD in insertCalls, "-" none
		amount := float64(i%13) * 0.37
		calls = append(calls, call{id: fmt.Sprintf("c-%d", i), tool: "t", start: at, cost: amount, currency: cur})
	}
	// Half stored before the rollup existed (the backfill, migration 0020,
	// counts them), half through the view.
	insertCalls(t, s, calls[:200])
	rerunBackfill(t, s, []string{"spans_cost_1m"}, 20)
	insertCalls(t, s, calls[200:])
	direct := func(from, to time.Time) map[string]costSum {
		t.Helper()
		p := timeParams(clickhouse.Parameters{}, map[string]time.Time{"from": from, "to": to})
		rows, err := s.query(clickhouse.Context(ctx, clickhouse.WithParameters(p)), `SELECT cost_currency, count(), sum(cost_amount) FROM spans FINAL
			WHERE cost_amount != 0 AND ts_start >= {from:DateTime64(9, 'UTC')} AND ts_start < {to:DateTime64(9, 'UTC')} GROUP BY cost_currency`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]costSum{}
		for rows.Next() {
			var cur string
			var c costSum
			if err := rows.Scan(&cur, &c.calls, &c.amount); err != nil {
				t.Fatal(err)
			}
			out[cur] = c
		}
		return out
	}
	same := func(a, b map[string]costSum) bool {
		if len(a) != len(b) {
			return false
		}
		for k, x := range a {
			y, ok := b[k]
			if !ok || x.calls != y.calls || math.Abs(x.amount-y.amount) > 1e-9*math.Max(1, math.Abs(y.amount)) {
				return false
			}
		}
		return true
	}
	windows := [][2]time.Time{
		{now.Add(-40 * time.Second), now},
		{now.Add(-10 * time.Second), now.Add(-5 * time.Second)},
		{now.Add(-90 * time.Minute), now},
		{now.Add(-90*time.Minute - 13*time.Second), now.Add(-7 * time.Minute)},
		{now.Add(-7 * 24 * time.Hour), now},
		{now.Truncate(time.Minute).Add(-time.Hour), now.Truncate(time.Minute)},
	}
	// Each window alone, and all of them in one query (as the cost KPI
	// asks for its two).
	all, err := s.costSums(ctx, windows...)
	if err != nil || len(all) != len(windows) {
		t.Fatalf("costSums of %d windows: %d, %v", len(windows), len(all), err)
	}
	for i, r := range windows {
		one, err := s.costSums(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		want := direct(r[0], r[1])
		if !same(one[0], want) {
			t.Errorf("[%s, %s): rollup %+v, spans %+v", r[0], r[1], one[0], want)
		}
		if !same(all[i], want) {
			t.Errorf("[%s, %s) among %d windows: rollup %+v, spans %+v", r[0], r[1], len(windows), all[i], want)
		}
	}
	ser, _ := AlignSeries(now.Add(-2*24*time.Hour), now, time.Hour)
	points, err := s.CostSeries(ctx, "USD", ser)
	if err != nil || len(points) == 0 {
		t.Fatal(points, err)
	}
	for _, p := range points {
		want := direct(p.Start, p.Start.Add(time.Hour))["USD"]
		if p.Calls != want.calls || math.Abs(p.Amount-want.amount) > 1e-9*math.Max(1, want.amount) {
			t.Errorf("step %s: %+v, spans %+v", p.Start, p, want)
		}
	}
}

// TestCostDetailRollupsMatchSpans checks the cost KPI's top workflows
// and per-tool anomaly figures, read from the per-tool (hour and minute)
// and per-workflow rollups and the seconds at the windows' edges from
// spans, against the same sums worked out here from the calls: for a now
// on a minute and off it, with spans stored before the rollups existed
// (the backfills, migrations 0026 and 0029) and after.
func TestCostDetailRollupsMatchSpans(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	end := time.Now().UTC().Truncate(time.Minute).Add(-3 * time.Minute)
	var calls []call
	for i := 0; i < 900; i++ {
		// Denser in the last two hours, so both windows have calls at
		// their edges.
		back := time.Duration(i*i) * 733 * time.Millisecond
		if i%3 == 0 {
			back = time.Duration(i) * 7919 * time.Millisecond
		}
		calls = append(calls, call{
			id: fmt.Sprintf("c-%d", i), tool: fmt.Sprintf("t%d", i%7), server: fmt.Sprintf("s%d", i%2), group: fmt.Sprintf("g%d", i%7%3), // a tool is in one group
			workflow: fmt.Sprintf("wf-%d", i%11), start: end.Add(-back), cost: float64(i%17) * 0.013,
			currency: []string{"", "EUR", "-", ""}[i%4], // "" is USD in insertCalls, "-" none
		})
	}
	nows := []time.Time{end, end.Add(-37*time.Minute - 29*time.Second), end.Add(-2*time.Hour + 11*time.Second)}
	// Calls every 97 s for ±97 minutes around each 7-day baseline's
	// start, so that its seconds, minutes and hours all hold some.
	for j, now := range nows {
		d7 := now.Add(-time.Hour - 7*24*time.Hour)
		for k := -60; k <= 60; k++ {
			calls = append(calls, call{id: fmt.Sprintf("edge-%d-%d", j, k), tool: fmt.Sprintf("t%d", (k+60)%7), server: fmt.Sprintf("s%d", (k+60)%2),
				group: fmt.Sprintf("g%d", (k+60)%7%3), workflow: "wf-edge", start: d7.Add(time.Duration(k) * 97 * time.Second), cost: 0.07})
		}
	}
	rand.New(rand.NewPCG(3, 5)).Shuffle(len(calls), func(i, j int) { calls[i], calls[j] = calls[j], calls[i] })
	insertCalls(t, s, calls[:len(calls)/2])
	rerunBackfill(t, s, []string{"spans_cost_tool_1m", "spans_cost_workflow_1h", "spans_cost_tool_1h"}, 26, 29)
	insertCalls(t, s, calls[len(calls)/2:])
	type sums struct {
		n int
		a float64
	}
	close := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9*math.Max(1, math.Abs(y)) }
	for _, now := range nows {
		// An anomaly factor this low flags every tool with a baseline and a
		// last hour: their figures are all in the report.
		rep, err := s.Cost(ctx, CostConfig{Currency: "USD", AnomalyFactor: 1e-9, TopWorkflows: 100}, now)
		if err != nil {
			t.Fatal(err)
		}
		m0 := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		h1, d7 := now.Add(-time.Hour), now.Add(-time.Hour-7*24*time.Hour)
		wfs := map[string]sums{}
		recent, base := map[[2]string]sums{}, map[[2]string]sums{}
		for _, c := range calls {
			if c.currency != "" || !c.start.Before(now) {
				continue
			}
			if !c.start.Before(m0) {
				w := wfs[c.workflow]
				wfs[c.workflow] = sums{w.n + 1, w.a + c.cost}
			}
			k := [2]string{c.server, c.tool}
			switch {
			case !c.start.Before(h1):
				r := recent[k]
				recent[k] = sums{r.n + 1, r.a + c.cost}
			case !c.start.Before(d7):
				b := base[k]
				base[k] = sums{b.n + 1, b.a + c.cost}
			}
		}
		if len(rep.Workflows) != len(wfs) {
			t.Fatalf("now %s: %d workflows, want %d", now, len(rep.Workflows), len(wfs))
		}
		for _, w := range rep.Workflows {
			if want := wfs[w.Workflow]; int(w.Calls) != want.n || !close(w.Cost, want.a) {
				t.Errorf("now %s: workflow %s: %d calls %.6f, want %d %.6f", now, w.Workflow, w.Calls, w.Cost, want.n, want.a)
			}
		}
		flagged := 0
		for k, r := range recent {
			if b := base[k]; b.n > 0 && b.a > 0 && r.a > 0 {
				flagged++
			}
		}
		if len(rep.Anomalies) != flagged || flagged == 0 {
			t.Fatalf("now %s: %d tools flagged, want %d (and some)", now, len(rep.Anomalies), flagged)
		}
		for _, a := range rep.Anomalies {
			k := [2]string{a.Server, a.Tool}
			r, b := recent[k], base[k]
			if a.Reason != "own_baseline" || !close(a.RecentSpend, r.a) || !close(a.RecentPerCall, r.a/float64(r.n)) || !close(a.BaselinePerCall, b.a/float64(b.n)) {
				t.Errorf("now %s: %+v, want recent %d calls %.6f, baseline %d calls %.6f", now, a, r.n, r.a, b.n, b.a)
			}
		}
	}
}
