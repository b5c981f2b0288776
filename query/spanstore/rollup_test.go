package spanstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// withinAccuracy reports whether got is within LatencyAccuracy of the
// exact quantile q of vals, by quantileExact's rule: the value at index
// ⌊q·n⌋ of the sorted values.
func withinAccuracy(vals []float64, q, got float64) bool {
	s := slices.Clone(vals)
	slices.Sort(s)
	exact := s[min(len(s)-1, int(math.Floor(q*float64(len(s)))))]
	return math.Abs(got-exact) <= LatencyAccuracy*exact
}

// TestLatencyRollup checks the default latency answer — whole minutes from
// the rollups, edge seconds from spans — against the fixture: calls exact
// for any window, quantiles within LatencyAccuracy of the exact ones.
func TestLatencyRollup(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	// 300 calls of "search", one every 30 s over two and a half hours,
	// latency 1..300 ms; 40 calls of "write" at 1 s steps, latency
	// 500 ms + i.
	base := time.Now().UTC().Add(-4 * time.Hour).Truncate(time.Hour)
	var spans []Span
	at := map[string][]time.Time{}
	lat := map[string][]float64{}
	add := func(id, tool string, ts time.Time, l time.Duration) {
		spans = append(spans, span(id, tool, "tickets", ts, l, uint64(len(spans))))
		at[tool] = append(at[tool], ts)
		lat[tool] = append(lat[tool], float64(l)/float64(time.Millisecond))
	}
	for i := 0; i < 300; i++ {
		add(fmt.Sprintf("s-%03d", i), "search", base.Add(time.Duration(30*i)*time.Second), time.Duration(i+1)*time.Millisecond)
	}
	for i := 0; i < 40; i++ {
		add(fmt.Sprintf("w-%03d", i), "write", base.Add(time.Duration(i)*time.Second+500*time.Millisecond), 500*time.Millisecond+time.Duration(i)*time.Millisecond)
	}
	// Inserted in two batches, so the rollup holds several states per
	// minute that the query must merge.
	for _, part := range [][]Span{spans[:170], spans[170:]} {
		if err := s.Insert(ctx, part); err != nil {
			t.Fatal(err)
		}
	}

	for _, w := range []struct {
		name     string
		from, to time.Time
	}{
		{"whole minutes", base, base.Add(10 * time.Minute)},
		{"cut mid-minute at both ends", base.Add(37 * time.Second), base.Add(7*time.Minute + 13*time.Second)},
		{"inside one minute", base.Add(61 * time.Second), base.Add(119 * time.Second)},
		{"seconds, minutes and an hour", base.Add(13 * time.Second), base.Add(2*time.Hour + 23*time.Minute + 5*time.Second)},
		{"everything", base.Add(-time.Hour), base.Add(4 * time.Hour)},
	} {
		t.Run(w.name, func(t *testing.T) {
			got, err := s.Latency(ctx, LatencyQuery{By: "tool", From: w.from, To: w.to})
			if err != nil {
				t.Fatal(err)
			}
			rows := map[string]LatencyRow{}
			for _, r := range got {
				rows[r.Key] = r
			}
			for _, tool := range []string{"search", "write"} {
				var in []float64
				for i, ts := range at[tool] {
					if !ts.Before(w.from) && ts.Before(w.to) {
						in = append(in, lat[tool][i])
					}
				}
				r, ok := rows[tool]
				if len(in) == 0 {
					if ok {
						t.Errorf("%s: %d calls reported, none in the window", tool, r.Calls)
					}
					continue
				}
				if r.Calls != uint64(len(in)) {
					t.Errorf("%s: %d calls, want %d", tool, r.Calls, len(in))
				}
				for _, c := range []struct {
					q   float64
					got float64
				}{{0.5, r.P50ms}, {0.95, r.P95ms}, {0.99, r.P99ms}} {
					if !withinAccuracy(in, c.q, c.got) {
						t.Errorf("%s: p%.0f = %.3f ms, not within %.0f%% of the fixture's", tool, 100*c.q, c.got, 100*LatencyAccuracy)
					}
				}
			}
		})
	}
}

// TestInsertSkipsStoredRecords is what keeps the rollup exact: a record
// inserted again — a redelivered batch, a producer's late retry, a
// repeat inside one batch — is neither a second row nor a second call.
func TestInsertSkipsStoredRecords(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)
	var spans []Span
	for i := 0; i < 30; i++ {
		spans = append(spans, span(fmt.Sprintf("r-%02d", i), "search", "g", base.Add(time.Duration(i)*time.Second), 10*time.Millisecond, uint64(i)))
	}
	// Tool names are free text: quotes, backslashes and newlines must
	// survive the stored-record lookup's parameter.
	odd := span("odd-1", "it's a \\ tool\nwith\ttabs", "g'\\", base, time.Millisecond, 100)
	spans = append(spans, odd)
	if err := s.Insert(ctx, spans[:20]); err != nil {
		t.Fatal(err)
	}
	// Redelivery: overlapping batches, a repeat within a batch, the odd one twice.
	retry := append(append([]Span{}, spans[10:]...), spans[12], odd)
	if err := s.Insert(ctx, retry); err != nil {
		t.Fatal(err)
	}
	if err := s.Insert(ctx, spans); err != nil {
		t.Fatal(err)
	}
	// Redelivered to a writer whose watermark is below them: the flag
	// alone must make Insert look them up.
	s.mu.Lock()
	s.maxLeaf = 0
	s.mu.Unlock()
	var redelivered []Span
	for _, sp := range spans[25:] {
		sp.MaybeStored = true
		redelivered = append(redelivered, sp)
	}
	if err := s.Insert(ctx, redelivered); err != nil {
		t.Fatal(err)
	}
	var rows, calls1m, calls1h uint64
	if err := s.conn.QueryRow(ctx, `SELECT count() FROM spans`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := s.conn.QueryRow(ctx, `SELECT sum(calls) FROM spans_latency_1m`).Scan(&calls1m); err != nil {
		t.Fatal(err)
	}
	if err := s.conn.QueryRow(ctx, `SELECT sum(calls) FROM spans_latency_1h`).Scan(&calls1h); err != nil {
		t.Fatal(err)
	}
	if rows != 31 || calls1m != 31 || calls1h != 31 {
		t.Fatalf("after retries: %d rows (without FINAL), %d and %d calls in the rollups; want 31", rows, calls1m, calls1h)
	}
	var tool string
	if err := s.conn.QueryRow(ctx, `SELECT tool_name FROM spans WHERE record_id = 'odd-1'`).Scan(&tool); err != nil || tool != odd.Record.Tool.Name {
		t.Fatalf("odd tool name stored as %q (%v)", tool, err)
	}
}

// TestRollupBackfill covers spans stored before the rollup existed (or
// before its latest form): the backfill migration (0011, which rebuilt
// the rollups with the tool's server and without policy blocks) rebuilds
// them from the spans, and running it again (as after a crash part-way)
// does not count anything twice.
func TestRollupBackfill(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)
	var spans []Span
	for i := 0; i < 25; i++ {
		spans = append(spans, span(fmt.Sprintf("b-%02d", i), "search", "g", base.Add(time.Duration(i)*7*time.Second), time.Duration(i+1)*time.Millisecond, uint64(i)))
	}
	if err := s.Insert(ctx, spans); err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 2; run++ {
		// As if the store predated the rollup: empty it and forget the
		// backfill migration.
		rerunBackfill(t, s, []string{"spans_latency_1m", "spans_latency_1h"}, 11)
	}
	// Re-running the migration itself must not double either.
	rerunBackfill(t, s, nil, 11)
	for _, table := range []string{"spans_latency_1m", "spans_latency_1h"} {
		var calls uint64
		if err := s.conn.QueryRow(ctx, "SELECT sum(calls) FROM "+table).Scan(&calls); err != nil {
			t.Fatal(err)
		}
		if calls != 25 {
			t.Fatalf("%s after backfill: %d calls, want 25", table, calls)
		}
	}
	got, err := s.Latency(ctx, LatencyQuery{By: "tool", From: base, To: base.Add(time.Hour)})
	if err != nil || len(got) != 1 || got[0].Calls != 25 {
		t.Fatalf("latency after backfill: %+v (%v)", got, err)
	}
}

// TestHistogramQuantiles checks the histogram reading against exact
// quantiles on distributions shaped like tool latency, bucketing each
// value with the same formula the rollups' DDL uses.
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, gen := range map[string]func() float64{
		"uniform 1µs–10s":    func() float64 { return 1 + rng.Float64()*1e7 },
		"lognormal ~20ms":    func() float64 { return math.Exp(math.Log(20000) + rng.NormFloat64()) },
		"bimodal cache/miss": func() float64 { return []float64{800, 250000}[rng.IntN(2)] * (1 + 0.1*rng.Float64()) },
		"single value":       func() float64 { return 4242 },
	} {
		t.Run(name, func(t *testing.T) {
			hist := map[uint16]uint64{}
			var vals []float64
			for range 5000 {
				v := math.Round(gen())
				vals = append(vals, v)
				hist[uint16(math.Round(math.Log(max(v, 1))/math.Log(latencyBucketBase)))]++
			}
			qs := []float64{0.5, 0.95, 0.99}
			for i, got := range histogramQuantiles(hist, qs...) {
				if !withinAccuracy(vals, qs[i], got) {
					t.Errorf("p%.0f = %.1f µs, not within %.0f%% of the exact value", 100*qs[i], got, 100*LatencyAccuracy)
				}
			}
		})
	}
	if got := histogramQuantiles(nil, 0.5); got[0] != 0 {
		t.Errorf("empty histogram: %v", got)
	}
}

// histogramQuantiles is histogramQuantilesSQL's reference in Go: it reads
// quantiles off a latency histogram (bucket → calls) with the rank rule
// of quantileExact, the element at index ⌊q·n⌋ of the sorted latencies,
// so that a rolled-up answer differs from the exact one only by the
// bucket width. It returns microseconds.
func histogramQuantiles(hist map[uint16]uint64, qs ...float64) []float64 {
	buckets := make([]uint16, 0, len(hist))
	var n uint64
	for b, c := range hist {
		buckets = append(buckets, b)
		n += c
	}
	slices.Sort(buckets)
	out := make([]float64, len(qs))
	if n == 0 {
		return out
	}
	for i, q := range qs {
		rank := min(uint64(q*float64(n)), n-1)
		var seen uint64
		for _, b := range buckets {
			seen += hist[b]
			if seen > rank {
				out[i] = math.Pow(latencyBucketBase, float64(b))
				break
			}
		}
	}
	return out
}

// TestPlanRollupMatchesSpans checks the plans KPI and its series, read
// from the plan rollup and the part-hour of spans at the window's end,
// against the same figures worked out here from the calls themselves:
// plans whose calls cross hours, plans that began before the window, a
// window ending mid-hour, and spans stored before the rollup existed
// (counted by the backfill, migration 0023).
func TestPlanRollupMatchesSpans(t *testing.T) {
	s := testStore(t)
	now := time.Now().UTC().Truncate(time.Minute).Add(-17 * time.Second)
	calls := randomPlanCalls(now, 7)
	calls = append(calls, call{id: "no-plan", tool: "t", start: now.Add(-time.Hour), dur: time.Millisecond, status: "timeout"})
	// Around the second window below, [now-3d, cut): a plan that went
	// fine before cut and failed after it (fine in that window), one
	// that starts after cut (not in it), and one that began two hours
	// before the window and failed inside it (not in it either).
	cut, early := now.Add(-26*time.Hour-7*time.Minute), now.Add(-3*24*time.Hour)
	calls = append(calls,
		call{id: "edge-1a", tool: "t", workflow: "wf-a", plan: "edge-1", start: cut.Add(-10 * time.Minute), dur: time.Millisecond},
		call{id: "edge-1b", tool: "t", workflow: "wf-a", plan: "edge-1", start: cut.Add(5 * time.Minute), dur: time.Millisecond, status: "system_error"},
		call{id: "edge-2", tool: "t", workflow: "wf-a", plan: "edge-2", start: cut.Add(time.Minute), dur: time.Millisecond, status: "policy_blocked"},
		call{id: "edge-3a", tool: "t", workflow: "wf-b", plan: "edge-3", start: early.Add(-2 * time.Hour), dur: time.Millisecond},
		call{id: "edge-3b", tool: "t", workflow: "wf-b", plan: "edge-3", start: early.Add(time.Minute), dur: time.Millisecond, status: "timeout"})
	insertCalls(t, s, calls[:len(calls)/2])
	rerunBackfill(t, s, []string{"spans_plans_1h"}, 23)
	insertCalls(t, s, calls[len(calls)/2:])
	checkPlansAgainstCalls(t, s, calls, []planWindow{
		{now.Add(-14 * 24 * time.Hour), now},
		{early, cut},
		{now.Add(-6 * 24 * time.Hour), now.Truncate(time.Hour)},
	})
}

// planWindow is a window [from, to) the plans KPI is asked about.
type planWindow struct{ from, to time.Time }

// checkPlansAgainstCalls compares the plans KPI and its series (steps of
// 6 hours) over each window with the figures worked out from calls.
func checkPlansAgainstCalls(t *testing.T, s *Store, calls []call, windows []planWindow) {
	t.Helper()
	ctx := context.Background()
	// plan is what the KPI needs of a plan, from its calls in [lo, to).
	type plan struct {
		wf                   string
		start, firstFail     time.Time
		blocked, failed, bad int
	}
	plansIn := func(from, to time.Time) map[string]*plan {
		lo := from.Truncate(time.Hour).Add(-s.cfg.PlanMaxDuration)
		out := map[string]*plan{}
		for _, c := range calls {
			if c.plan == "" || c.start.Before(lo) || !c.start.Before(to) {
				continue
			}
			p := out[c.plan]
			if p == nil {
				p = &plan{wf: c.workflow, start: c.start}
				out[c.plan] = p
			}
			if c.start.Before(p.start) {
				p.start = c.start
			}
			if c.status != "" && c.status != "ok" { // insertCalls stores "" as ok
				p.bad++
				if end := c.start.Add(c.dur); p.firstFail.IsZero() || end.Before(p.firstFail) {
					p.firstFail = end
				}
			}
			switch c.status {
			case "policy_blocked":
				p.blocked++
			case "tool_error", "system_error", "timeout":
				p.failed++
			}
		}
		for id, p := range out {
			if p.start.Before(from) {
				delete(out, id)
			}
		}
		return out
	}
	for _, r := range windows {
		rep, err := s.Plans(ctx, r.from, r.to)
		if err != nil {
			t.Fatal(err)
		}
		ps := plansIn(rep.From, r.to)
		want := map[int64]*PlanWeek{} // by the week's Unix time: time.Time keys compare locations
		var detect, recover = map[int64]float64{}, map[int64]float64{}
		for _, p := range ps {
			wk := monday(p.start).Unix()
			w := want[wk]
			if w == nil {
				w = &PlanWeek{Week: monday(p.start)}
				want[wk] = w
			}
			w.Plans++
			switch {
			case p.blocked > 0:
				w.PolicyBlocked++
			case p.failed > 0:
				w.SystemErrors++
			}
			if p.blocked+p.failed > 0 {
				detect[wk] += float64(p.firstFail.UnixMilli() - p.start.UnixMilli()) // dateDiff counts millisecond boundaries
			}
			if p.bad == 0 || p.wf == "" {
				continue
			}
			// The workflow's first successful plan after the failure.
			var next time.Time
			for _, o := range ps {
				if o.wf == p.wf && o.bad == 0 && o.start.After(p.firstFail) && (next.IsZero() || o.start.Before(next)) {
					next = o.start
				}
			}
			if !next.IsZero() {
				w.Recovered++
				recover[wk] += float64(next.UnixMilli() - p.firstFail.UnixMilli())
			}
		}
		if len(rep.Weeks) != len(want) {
			t.Fatalf("[%s, %s): %d weeks, want %d", r.from, r.to, len(rep.Weeks), len(want))
		}
		for _, got := range rep.Weeks {
			w := want[got.Week.Unix()]
			if w == nil {
				t.Fatalf("[%s, %s): week %s has no plans here", r.from, r.to, got.Week)
			}
			if failed := w.PolicyBlocked + w.SystemErrors; failed > 0 {
				w.MeanTimeToDetectMs = detect[got.Week.Unix()] / float64(failed)
			}
			if w.Recovered > 0 {
				w.MeanTimeToRecoverMs = recover[got.Week.Unix()] / float64(w.Recovered)
			}
			if got.Plans != w.Plans || got.PolicyBlocked != w.PolicyBlocked || got.SystemErrors != w.SystemErrors ||
				got.Recovered != w.Recovered || math.Abs(got.MeanTimeToDetectMs-w.MeanTimeToDetectMs) > 1e-6 ||
				math.Abs(got.MeanTimeToRecoverMs-w.MeanTimeToRecoverMs) > 1e-6 {
				t.Errorf("[%s, %s) week %s:\n got %+v\nwant %+v", r.from, r.to, got.Week, got, *w)
			}
		}
		ser, err := AlignSeries(r.from, r.to, 6*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		points, err := s.PlanSeries(ctx, ser)
		if err != nil {
			t.Fatal(err)
		}
		wantPts := map[int64]PlanPoint{}
		for _, p := range plansIn(ser.From, ser.To) {
			b := ser.From.Add(p.start.Sub(ser.From).Truncate(6 * time.Hour))
			pt := wantPts[b.Unix()]
			pt.Start = b
			pt.Plans++
			switch {
			case p.blocked > 0:
				pt.PolicyBlocked++
			case p.failed > 0:
				pt.SystemErrors++
			}
			wantPts[b.Unix()] = pt
		}
		if len(points) != len(wantPts) {
			t.Fatalf("series of [%s, %s): %d points, want %d", r.from, r.to, len(points), len(wantPts))
		}
		for _, got := range points {
			w := wantPts[got.Start.Unix()]
			if got.Plans != w.Plans || got.PolicyBlocked != w.PolicyBlocked || got.SystemErrors != w.SystemErrors {
				t.Errorf("series of [%s, %s) at %s: got %+v, want %+v", r.from, r.to, got.Start, got, w)
			}
		}
	}
}

// randomPlanCalls is 300 plans of 1 to 4 calls over the 12 days before
// now, in 4 workflows (one of them none), with every outcome, many of
// them crossing an hour.
func randomPlanCalls(now time.Time, seed uint64) []call {
	rnd := rand.New(rand.NewPCG(seed, 11))
	statuses := []string{"ok", "ok", "ok", "ok", "policy_blocked", "tool_error", "system_error", "timeout", "cancelled"}
	var calls []call
	for p := 0; p < 300; p++ {
		begin := now.Add(-time.Duration(rnd.Int64N(int64(12 * 24 * time.Hour))))
		wf := []string{"", "wf-a", "wf-b", "wf-c"}[rnd.IntN(4)]
		for c := 0; c < 1+rnd.IntN(4); c++ {
			st := statuses[rnd.IntN(len(statuses))]
			calls = append(calls, call{
				id: fmt.Sprintf("p%d-%d", p, c), tool: "t", workflow: wf, plan: fmt.Sprintf("plan-%d", p), status: st, code: "E",
				// Calls up to 90 minutes after the plan's first: many cross an hour.
				start: begin.Add(time.Duration(c) * time.Duration(rnd.Int64N(int64(30*time.Minute)))),
				dur:   time.Duration(1+rnd.IntN(2000)) * time.Millisecond,
			})
		}
	}
	return calls
}

// TestSealedPlansMatchCalls: once SealPlans has counted the hours whose
// plans are finished, the plans KPI and its series add up the sealed
// counts and group only the plans since — and still match the figures
// worked out from the calls; a call that arrives after its hour was
// sealed stops the sealed counts from being used until SealPlans has
// sealed again from the start; a seal that stopped part-way leaves
// nothing counted; sealing twice changes nothing.
func TestSealedPlansMatchCalls(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	now := time.Now().UTC().Truncate(time.Minute).Add(-17 * time.Second)
	calls := randomPlanCalls(now, 13)
	// Plans that start just before and after the hour that will be the
	// sealed-to hour, some of them failing after it.
	// The latest call is at now or, a plan's calls going on up to 90
	// minutes after its first, up to an hour and a half later: the seal
	// follows now, the earlier.
	s.clock = func() time.Time { return now }
	t.Cleanup(func() { s.clock = nil })
	w := s.sealTarget(now)
	for i, off := range []time.Duration{-40 * time.Minute, -3 * time.Minute, 2 * time.Minute, 25 * time.Minute} {
		id := fmt.Sprintf("seal-edge-%d", i)
		calls = append(calls,
			call{id: id + "a", tool: "t", workflow: "wf-a", plan: id, start: w.Add(off), dur: time.Millisecond},
			call{id: id + "b", tool: "t", workflow: "wf-a", plan: id, start: w.Add(off + 10*time.Minute), dur: time.Millisecond, status: "tool_error"},
			call{id: id + "c", tool: "t", workflow: "wf-b", plan: id + "-ok", start: w.Add(off + 11*time.Minute), dur: time.Millisecond})
	}
	// And the latest call, which the sealed-to hour follows.
	calls = append(calls, call{id: "latest", tool: "t", plan: "latest", start: now, dur: time.Millisecond})
	insertCalls(t, s, calls)
	windows := []planWindow{
		{now.Add(-14 * 24 * time.Hour), now},
		{now.Add(-6 * 24 * time.Hour), now.Truncate(time.Hour)},
		{now.Add(-30 * time.Hour), now},
		{now.Add(-5 * 24 * time.Hour), now.Add(-20 * time.Hour)}, // ends before the sealed plans' calls do: not sealed
	}
	if err := s.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sealedTo(t, s, now); !got.Equal(w) {
		t.Fatalf("sealed to %s, want %s (the bound before the hour ended half an hour before the latest call)", got, w)
	}
	checkPlansAgainstCalls(t, s, calls, windows)

	// Sealing again finds nothing to do and changes nothing.
	var rowsBefore, rowsAfter uint64
	_ = s.queryRow(ctx, `SELECT count() FROM plans_sealed_1h`).Scan(&rowsBefore)
	if err := s.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	_ = s.queryRow(ctx, `SELECT count() FROM plans_sealed_1h`).Scan(&rowsAfter)
	if rowsAfter != rowsBefore || !sealedTo(t, s, now).Equal(w) {
		t.Fatalf("a second seal: %d rows (was %d), sealed to %s", rowsAfter, rowsBefore, sealedTo(t, s, now))
	}

	// Rows of a seal that stopped before its state was written (chunk
	// after the sealed-to hour) are not counted, and the next seal
	// deletes them.
	if err := s.conn.Exec(ctx, `INSERT INTO plans_sealed_1h (hour, chunk, plans, policy, system, detect_ms, detected, recover_ms, recovered)
		VALUES (?, ?, 1000, 1000, 0, 0, 0, 0, 0)`, w.Add(-48*time.Hour), w.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	checkPlansAgainstCalls(t, s, calls, windows)
	if err := s.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	var stale uint64
	_ = s.queryRow(ctx, `SELECT count() FROM plans_sealed_1h WHERE plans = 1000`).Scan(&stale)
	if stale != 0 {
		t.Fatal("the rows of an unfinished seal are still there after the next")
	}

	// Late calls: a sealed plan fails 3 days late, and a plan of 5 days
	// ago arrives whole.
	late := []call{
		{id: "late-1", tool: "t", workflow: "wf-c", plan: "plan-late-a", start: now.Add(-5 * 24 * time.Hour), dur: time.Millisecond, status: "policy_blocked", code: "L"},
		{id: "late-2", tool: "t", workflow: "wf-c", plan: "plan-late-a", start: now.Add(-5*24*time.Hour + time.Minute), dur: time.Millisecond},
	}
	for _, c := range calls {
		if c.plan != "" && c.start.Before(w.Add(-3*24*time.Hour)) && c.status == "ok" {
			late = append(late, call{id: "late-3", tool: "t", workflow: c.workflow, plan: c.plan, start: c.start.Add(time.Minute), dur: time.Millisecond, status: "system_error", code: "L"})
			break
		}
	}
	// Leaves after the others'.
	insertCallsFrom(t, s, uint64(len(calls)), late)
	calls = append(calls, late...)
	if got := sealedTo(t, s, now); !got.IsZero() {
		t.Fatalf("after late calls the sealed counts (to %s) are still used", got)
	}
	checkPlansAgainstCalls(t, s, calls, windows)
	if err := s.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sealedTo(t, s, now); !got.Equal(w) {
		t.Fatalf("sealed again to %s, want %s", got, w)
	}
	checkPlansAgainstCalls(t, s, calls, windows)
}

// sealedTo is the sealed-to hour the plans KPI of a window ending at
// `at` uses (zero when it groups every plan).
func sealedTo(t *testing.T, s *Store, at time.Time) time.Time {
	t.Helper()
	seal, err := s.planSeal(context.Background(), at)
	if err != nil {
		t.Fatal(err)
	}
	if seal == nil {
		return time.Time{}
	}
	return seal.to
}

// withPlanBound is s (its engine and tables) opened with another longest
// plan duration, as a serve restarted with --plan-max-duration would be.
func withPlanBound(s *Store, d time.Duration) *Store {
	cfg := s.cfg
	cfg.PlanMaxDuration = d
	return &Store{cfg: cfg, table: s.table, catalogTable: s.catalogTable, tables: s.tables, conn: s.conn, engine: s.engine, log: s.log}
}

// TestPlanBoundIsKeptWithTheSeal: plans are grouped and sealed under the
// store's longest plan duration. A seal made under another bound is not
// read (the KPI groups every plan meanwhile) and the sealer starts over;
// under a bound of a day, a plan of ten hours is one plan, counted with
// all its calls in the window of its first, in the sealed hours as in
// the grouped ones.
func TestPlanBoundIsKeptWithTheSeal(t *testing.T) {
	ctx := context.Background()
	short := testStore(t)
	if short.cfg.PlanMaxDuration != DefaultPlanMaxDuration {
		t.Fatalf("the test store's bound is %v, want the default %v", short.cfg.PlanMaxDuration, DefaultPlanMaxDuration)
	}
	long := withPlanBound(short, 24*time.Hour)
	now := time.Now().UTC().Truncate(time.Minute).Add(-17 * time.Second)
	calls := randomPlanCalls(now, 17)
	calls = append(calls, call{id: "latest", tool: "t", plan: "latest", start: now, dur: time.Millisecond})
	insertCalls(t, short, calls)
	// The sealed-to hour follows the latest call, at now (others, up to
	// 90 minutes later, are after the store's now).
	short.clock = func() time.Time { return now }
	long.clock = short.clock
	t.Cleanup(func() { short.clock = nil })
	windows := []planWindow{{now.Add(-14 * 24 * time.Hour), now}, {now.Add(-30 * time.Hour), now}}
	sealed := func(s *Store) (to time.Time, bound time.Duration) {
		t.Helper()
		st, err := s.sealState(ctx)
		if err != nil || st == nil {
			t.Fatalf("seal state: %v, %v", st, err)
		}
		return sealedTo(t, s, now), st.bound
	}
	if err := short.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	hourBefore := now.Add(-planSealSlack).Truncate(time.Hour) // the hour that ended half an hour before
	if to, bound := sealed(short); !to.Equal(hourBefore.Add(-2*time.Hour)) || bound != 2*time.Hour {
		t.Fatalf("under the default bound: sealed to %s under %v, want 2 hours before %s, under 2h", to, bound, hourBefore)
	}
	checkPlansAgainstCalls(t, short, calls, windows)

	if to, _ := sealed(long); !to.IsZero() {
		t.Fatalf("a store with a bound of a day reads the seal made under 2h (to %s)", to)
	}
	checkPlansAgainstCalls(t, long, calls, windows)
	if err := long.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	if to, bound := sealed(long); !to.Equal(hourBefore.Add(-24*time.Hour)) || bound != 24*time.Hour {
		t.Fatalf("under a day: sealed to %s under %v, want a day before %s, under 24h", to, bound, hourBefore)
	}
	checkPlansAgainstCalls(t, long, calls, windows)

	// Plans of up to ten hours, failing at their end, each one plan under
	// a day: one across the sealed-to hour, by more than 2 hours; one
	// that began 5 hours before the second window's series (whose steps
	// of 6 hours start at a 6-hour boundary; the weeks at a Monday) and
	// failed in it (not in that series); one in the last hours (grouped
	// at each query).
	ser, err := AlignSeries(windows[1].from, windows[1].to, 6*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w := hourBefore.Add(-24 * time.Hour)
	long3 := func(id string, start time.Time, offs ...time.Duration) {
		for i, off := range offs {
			st := ""
			if i == len(offs)-1 {
				st = "tool_error"
			}
			calls = append(calls, call{id: fmt.Sprintf("%s-%d", id, i), tool: "t", workflow: "wf-long", plan: id, start: start.Add(off), dur: time.Millisecond, status: st})
		}
	}
	n0 := len(calls)
	long3("across-the-seal", w.Add(-3*time.Hour), 0, 5*time.Hour, 10*time.Hour)
	long3("before-the-window", ser.From.Add(-5*time.Hour), 0, 7*time.Hour)
	// A window whose series ends before the sealed plans' last calls
	// (then grouped whole, from the bound before it).
	windows = append(windows, planWindow{windows[1].from, ser.From.Add(12 * time.Hour)})
	long3("recent", now.Add(-11*time.Hour), 0, 5*time.Hour, 10*time.Hour)
	insertCallsFrom(t, long, uint64(n0), calls[n0:])
	if err := long.SealPlans(ctx); err != nil { // the first is late: sealed again from the start
		t.Fatal(err)
	}
	if to, _ := sealed(long); !to.Equal(w) {
		t.Fatalf("after late calls, sealed again to %s, want %s", to, w)
	}
	checkPlansAgainstCalls(t, long, calls, windows)
}

// TestLateCallGoesBackToTheLastGoodSeal: a plan call that arrives after
// its hour was sealed sends the sealer back to the latest seal whose
// plans' hours it is not in (migration 0038's marks), not to the start;
// one in the hours of the first seal's plans sends it to the start. Both
// times the sealed counts are not used until sealed again, and the KPI
// and its series match the calls after.
func TestLateCallGoesBackToTheLastGoodSeal(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	var logs bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	now := time.Now().UTC().Truncate(time.Minute).Add(-17 * time.Second)
	t.Cleanup(func() { s.clock, s.log = nil, slog.Default() })
	calls := randomPlanCalls(now, 21)
	calls = append(calls, call{id: "latest", tool: "t", plan: "latest", start: now, dur: time.Millisecond})
	insertCalls(t, s, calls)
	windows := []planWindow{{now.Add(-14 * 24 * time.Hour), now}, {now.Add(-30 * time.Hour), now}}
	// Two days ago, then now: a mark at each seal's hour.
	earlier := s.sealTarget(now.Add(-48 * time.Hour))
	s.clock = func() time.Time { return now.Add(-48 * time.Hour) }
	if err := s.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	w := s.sealTarget(now)
	s.clock = func() time.Time { return now }
	if err := s.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sealedTo(t, s, now); !got.Equal(w) {
		t.Fatalf("sealed to %s, want %s", got, w)
	}

	// A call an hour after the earlier seal's plans' hours, in a plan of
	// its own: the later seal no longer holds, the earlier one does.
	late := []call{{id: "late-recent", tool: "t", workflow: "wf-a", plan: "plan-late-recent",
		start: s.sealedCallsEnd(earlier).Add(time.Hour), dur: time.Millisecond, status: "tool_error", code: "L"}}
	insertCallsFrom(t, s, uint64(len(calls)), late)
	calls = append(calls, late...)
	if got := sealedTo(t, s, now); !got.IsZero() {
		t.Fatalf("after a late call the sealed counts (to %s) are still used", got)
	}
	checkPlansAgainstCalls(t, s, calls, windows)
	logs.Reset()
	if err := s.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "from the last seal before them") || !strings.Contains(logs.String(), "back_to="+earlier.Format("2006-01-02T15:04:05.000Z07:00")) {
		t.Fatalf("the sealer did not go back to the seal at %s:\n%s", earlier.Format(time.RFC3339), logs.String())
	}
	if got := sealedTo(t, s, now); !got.Equal(w) {
		t.Fatalf("sealed again to %s, want %s", got, w)
	}
	checkPlansAgainstCalls(t, s, calls, windows)

	// A call in the hours of the first seal's plans: to the start.
	var first time.Time
	for _, c := range calls {
		if first.IsZero() || c.start.Before(first) {
			first = c.start
		}
	}
	late = []call{{id: "late-old", tool: "t", workflow: "wf-b", plan: "plan-late-old",
		start: first.Add(time.Minute), dur: time.Millisecond, status: "policy_blocked", code: "L"}}
	insertCallsFrom(t, s, uint64(len(calls)), late)
	calls = append(calls, late...)
	logs.Reset()
	if err := s.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "sealing again from the start") {
		t.Fatalf("a call in the first seal's hours did not send the sealer to the start:\n%s", logs.String())
	}
	if got := sealedTo(t, s, now); !got.Equal(w) {
		t.Fatalf("sealed again to %s, want %s", got, w)
	}
	checkPlansAgainstCalls(t, s, calls, windows)
}

// TestFailureAndPlanCallRollupsMatchSpans: the month's top failure causes
// (whole hours from spans_failures_1h, the part-hour before now from the
// recent spans) and the plan calls per hour the sealer checks
// (plans_calls_1h) match what the calls say, for calls stored through
// the views and before them (the backfill, migration 0036).
func TestFailureAndPlanCallRollupsMatchSpans(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	now := time.Now().UTC()
	m0 := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	rnd := rand.New(rand.NewPCG(5, 8))
	type cause struct{ status, code string }
	causes := []cause{{"tool_error", "E1"}, {"tool_error", "E2"}, {"system_error", "E1"}, {"timeout", ""}, {"policy_blocked", "deny"}, {"ok", ""}}
	var calls []call
	for i := 0; i < 600; i++ {
		// The month so far, a day before it, and the last minutes.
		at := m0.Add(time.Duration(rnd.Int64N(int64(now.Sub(m0)))))
		switch i % 5 {
		case 0:
			at = m0.Add(-time.Duration(1+rnd.IntN(86400)) * time.Second)
		case 1:
			at = now.Add(-time.Duration(1+rnd.IntN(600)) * time.Second)
		}
		// Skewed, so the top three are not a tie.
		c := causes[min(len(causes)-1, int(rnd.ExpFloat64()*1.5))]
		plan := ""
		if i%3 != 0 {
			plan = fmt.Sprintf("p-%d", i/2)
		}
		calls = append(calls, call{id: fmt.Sprintf("f-%d", i), tool: "t", plan: plan, start: at, dur: time.Millisecond, status: c.status, code: c.code})
	}
	insertCalls(t, s, calls[:300])
	rerunBackfill(t, s, []string{"plans_calls_1h", "spans_failures_1h"}, 36)
	insertCalls(t, s, calls[300:])

	counts := map[cause]uint64{}
	for _, c := range calls {
		if c.status != "ok" && !c.start.Before(m0) {
			counts[cause{c.status, c.code}]++
		}
	}
	var want []FailureCause
	for c, n := range counts {
		want = append(want, FailureCause{Status: c.status, ErrorCode: c.code, Calls: n})
	}
	slices.SortFunc(want, func(a, b FailureCause) int {
		if a.Calls != b.Calls {
			return int(b.Calls) - int(a.Calls)
		}
		return strings.Compare(a.Status+"\x00"+a.ErrorCode, b.Status+"\x00"+b.ErrorCode)
	})
	rep, err := s.Plans(ctx, now.Add(-28*24*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if got, w := fmt.Sprint(rep.TopCauses), fmt.Sprint(want[:3]); got != w {
		t.Errorf("top causes %s, want %s", got, w)
	}
	for _, before := range []time.Time{m0, now.Truncate(time.Hour), now.Add(time.Hour)} {
		var want uint64
		for _, c := range calls {
			if c.plan != "" && c.start.Before(before.Truncate(time.Hour)) {
				want++
			}
		}
		got, err := s.planCallsBefore(ctx, before.Truncate(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("plan calls before %s: %d, want %d", before.Truncate(time.Hour), got, want)
		}
	}
}
