package spanstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proofline/proofline/schemas"
)

// fixedNow is mid-month, within the table's TTL, and never in the future,
// so month boundaries and retention cannot make these tests flaky.
func fixedNow() time.Time {
	n := time.Now().UTC()
	return time.Date(n.Year(), n.Month(), 1, 12, 0, 0, 0, time.UTC).AddDate(0, -1, 14)
}

// monday is 00:00 UTC of the Monday of t's week.
func monday(t time.Time) time.Time {
	d := t.UTC().Truncate(24 * time.Hour)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

type call struct {
	id, tool, workflow, plan, status, code string
	start                                  time.Time
	dur                                    time.Duration
	cost                                   float64
	currency                               string // default USD; "-" for none
	group                                  string // default g
	server                                 string
}

func insertCalls(t *testing.T, s *Store, calls []call) {
	t.Helper()
	insertCallsFrom(t, s, 0, calls)
}

// insertCallsFrom is insertCalls with leaves numbered from leaf0.
func insertCallsFrom(t *testing.T, s *Store, leaf0 uint64, calls []call) {
	t.Helper()
	var spans []Span
	for i, c := range calls {
		group := c.group
		if group == "" {
			group = "g"
		}
		sp := span(c.id, c.tool, group, c.start, c.dur, leaf0+uint64(i))
		r := sp.Record
		r.WorkflowID, r.PlanID = c.workflow, c.plan
		r.Tool.Server = c.server
		if c.status != "" {
			r.Outcome = schemas.Outcome{Status: c.status, ErrorCode: c.code}
		}
		switch c.currency {
		case "":
			r.Cost = &schemas.Cost{Amount: c.cost, Currency: "USD"}
		case "-":
			r.Cost = &schemas.Cost{Amount: c.cost}
		default:
			r.Cost = &schemas.Cost{Amount: c.cost, Currency: c.currency}
		}
		spans = append(spans, sp)
	}
	if err := s.Insert(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
}

// TestCostProjectionOfANewStore: minutes after a store's first call, the
// projection takes those minutes' spend as a day's, not as the rate of
// the minutes themselves.
func TestCostProjectionOfANewStore(t *testing.T) {
	s := testStore(t)
	now := fixedNow()
	insertCalls(t, s, []call{
		{id: "n1", tool: "t1", workflow: "wf-n", start: now.Add(-5 * time.Minute), cost: 13.5},
	})
	rep, err := s.Cost(context.Background(), CostConfig{Currency: "USD", MonthlyCap: 1000}, now)
	if err != nil {
		t.Fatal(err)
	}
	m0 := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	want := 13.5 + 13.5*float64(m0.AddDate(0, 1, 0).Sub(now))/float64(24*time.Hour)
	if math.Abs(rep.Total-13.5) > 1e-9 || math.Abs(rep.ProjectedTotal-want) > 1e-6 {
		t.Fatalf("total %v, projection %v; want 13.5 and %v (a day's rate), not %v (five minutes' rate)", rep.Total, rep.ProjectedTotal, want,
			13.5*float64(m0.AddDate(0, 1, 0).Sub(now))/float64(5*time.Minute))
	}
}

func TestCostKPI(t *testing.T) {
	s := testStore(t)
	now := fixedNow()
	insertCalls(t, s, []call{
		{id: "a1", tool: "t1", workflow: "wf-a", start: now.Add(-2 * time.Hour), cost: 2},
		{id: "a2", tool: "t1", workflow: "wf-a", start: now.Add(-3 * time.Hour), cost: 2},
		{id: "a3", tool: "t1", workflow: "wf-a", start: now.Add(-4 * time.Hour), cost: 2},
		// t2 costs 0.1 per call over the week, then 1.0 in the last hour.
		{id: "c1", tool: "t2", workflow: "wf-c", start: now.Add(-48 * time.Hour), cost: 0.1},
		{id: "c2", tool: "t2", workflow: "wf-c", start: now.Add(-49 * time.Hour), cost: 0.1},
		{id: "b1", tool: "t2", workflow: "wf-b", start: now.Add(-30 * time.Minute), cost: 1},
		// Last month: not in this month's total, nor in the 7-day baseline.
		{id: "old", tool: "t2", workflow: "wf-a", start: now.Add(-20 * 24 * time.Hour), cost: 100},
		// Another currency is left out; an amount without a currency is
		// never taken for USD: it is reported apart.
		{id: "eur", tool: "t1", workflow: "wf-a", start: now.Add(-2 * time.Hour), cost: 50, currency: "EUR"},
		{id: "nc1", tool: "t1", workflow: "wf-a", start: now.Add(-2 * time.Hour), cost: 45, currency: "-"},
		{id: "nc2", tool: "t2", workflow: "wf-a", start: now.Add(-20 * time.Minute), cost: 5, currency: "-"},
	})
	rep, err := s.Cost(context.Background(), CostConfig{Currency: "USD", MonthlyCap: 10}, now)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(rep.Total-7.2) > 1e-9 {
		t.Fatalf("month total %v, want 7.2", rep.Total)
	}
	if rep.WithoutCurrency.Calls != 2 || math.Abs(rep.WithoutCurrency.Amount-50) > 1e-9 {
		t.Fatalf("amounts without a currency: %+v, want 2 calls, 50 in all", rep.WithoutCurrency)
	}
	// The rest of the month at the rate of the last 7 days (7.2 spent).
	m0 := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	wantProj := 7.2 + 7.2*float64(m0.AddDate(0, 1, 0).Sub(now))/float64(7*24*time.Hour)
	if math.Abs(rep.ProjectedTotal-wantProj) > 1e-6 || !rep.OverCap {
		t.Fatalf("projection %v (over cap %v), want %v over the cap of 10", rep.ProjectedTotal, rep.OverCap, wantProj)
	}
	// An hour into the next month, the projection is not that hour's
	// spend times the month's hours, but the last 7 days' rate.
	early := m0.AddDate(0, 1, 0).Add(time.Hour)
	insertCalls(t, s, []call{
		{id: "d1", tool: "t1", workflow: "wf-a", start: early.Add(-3 * 24 * time.Hour), cost: 3},
		{id: "d2", tool: "t1", workflow: "wf-a", start: early.Add(-30 * time.Minute), cost: 1},
	})
	rep2, err := s.Cost(context.Background(), CostConfig{Currency: "USD", MonthlyCap: 1000}, early)
	if err != nil {
		t.Fatal(err)
	}
	m1 := m0.AddDate(0, 1, 0)
	want := 1 + 4*float64(m1.AddDate(0, 1, 0).Sub(early))/float64(7*24*time.Hour)
	if math.Abs(rep2.Total-1) > 1e-9 || math.Abs(rep2.ProjectedTotal-want) > 1e-6 {
		t.Fatalf("an hour into the month: total %v, projection %v; want 1 and %v (the last 7 days' rate), not %v",
			rep2.Total, rep2.ProjectedTotal, want, float64(m1.AddDate(0, 1, 0).Sub(m1))/float64(time.Hour))
	}

	// New tools, with no 7-day baseline of their own: t3 is held against
	// its group's (g: 6.2 over 5 calls, 1.24 a call); t4, alone in its
	// group, spent 2 in its first hour, more than 10% of the cap of 10.
	insertCalls(t, s, []call{
		{id: "t3a", tool: "t3", workflow: "wf-n", start: now.Add(-10 * time.Minute), cost: 5},
		{id: "t3b", tool: "t3", workflow: "wf-n", start: now.Add(-20 * time.Minute), cost: 5},
		{id: "t4a", tool: "t4", workflow: "wf-n", group: "h", start: now.Add(-5 * time.Minute), cost: 2},
	})
	rep3, err := s.Cost(context.Background(), CostConfig{Currency: "USD", MonthlyCap: 10}, now)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, a := range rep3.Anomalies {
		kinds = append(kinds, fmt.Sprintf("%s:%s:%.3f", a.Tool, a.Reason, a.RatioToBaseline))
	}
	if got := strings.Join(kinds, " "); got != "t2:own_baseline:10.000 t3:group_baseline:4.032 t4:cap_share:0.000" {
		t.Fatalf("anomalies with new tools: %s", got)
	}
	got := fmt.Sprintf("%+v", rep.Workflows)
	if got != "[{Workflow:wf-a Cost:6 Calls:3} {Workflow:wf-b Cost:1 Calls:1} {Workflow:wf-c Cost:0.2 Calls:2}]" {
		t.Fatalf("workflows %s", got)
	}
	if len(rep.Anomalies) != 1 || rep.Anomalies[0].Tool != "t2" || math.Abs(rep.Anomalies[0].RatioToBaseline-10) > 1e-9 {
		t.Fatalf("anomalies %+v, want t2 at 10× its baseline", rep.Anomalies)
	}
	// Per day over the last 3 days, in USD only: two days with spend —
	// c1, c2 two days back; a1–a3, b1 and the new tools' t3a, t3b, t4a
	// today (6 + 1 + 12).
	ser, err := AlignSeries(now.Add(-72*time.Hour), now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	points, err := s.CostSeries(context.Background(), "USD", ser)
	day := now.Truncate(24 * time.Hour)
	if err != nil || len(points) != 2 || !points[0].Start.Equal(day.Add(-48*time.Hour)) || points[0].Calls != 2 || math.Abs(points[0].Amount-0.2) > 1e-9 ||
		!points[1].Start.Equal(day) || points[1].Calls != 7 || math.Abs(points[1].Amount-19) > 1e-9 {
		t.Fatalf("cost series %+v %v", points, err)
	}
}

// TestCostAnomaliesPerServer: search on jira-mcp and search on
// confluence-mcp are two tools; only the one whose cost per call went up
// is flagged, and the anomaly names its server. (Taken together, the two
// averaged to 5.5× the baseline, and "search" was all the report said.)
func TestCostAnomaliesPerServer(t *testing.T) {
	s := testStore(t)
	now := fixedNow()
	var calls []call
	for i, srv := range []string{"jira-mcp", "confluence-mcp"} {
		calls = append(calls,
			call{id: fmt.Sprintf("b%d", i), tool: "search", server: srv, workflow: "wf", start: now.Add(-48 * time.Hour), cost: 0.1},
			call{id: fmt.Sprintf("r%d", i), tool: "search", server: srv, workflow: "wf", start: now.Add(-10 * time.Minute), cost: 0.1 + 0.9*float64(i)})
	}
	insertCalls(t, s, calls)
	rep, err := s.Cost(context.Background(), CostConfig{Currency: "USD"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Anomalies) != 1 || rep.Anomalies[0].Server != "confluence-mcp" || rep.Anomalies[0].Tool != "search" ||
		math.Abs(rep.Anomalies[0].RatioToBaseline-10) > 1e-9 {
		t.Fatalf("anomalies %+v, want confluence-mcp's search at 10× its baseline only", rep.Anomalies)
	}
}

// TestPlanRecoveryIsTheNextSuccessAfterTheFailure: a failed plan recovers
// at the start of its workflow's first successful plan that starts after
// the failure ended — not one starting at that same instant, not one
// before — both when the plans are grouped at query time and when they
// are sealed.
func TestPlanRecoveryIsTheNextSuccessAfterTheFailure(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	now := fixedNow()
	T := now.Add(-30 * time.Hour)
	ms := time.Millisecond
	insertCalls(t, s, []call{
		{id: "a0", tool: "x", workflow: "wf", plan: "a0", start: T.Add(-time.Second), dur: ms},
		// a1 fails from T to T+200ms; a2 starts as it ends; a3 at T+3s.
		{id: "a1", tool: "x", workflow: "wf", plan: "a1", start: T, dur: 200 * ms, status: "system_error", code: "E1"},
		{id: "a2", tool: "x", workflow: "wf", plan: "a2", start: T.Add(200 * ms), dur: ms},
		// b1 fails from T+100ms to T+400ms, after a2 started: a3 too.
		{id: "b1", tool: "x", workflow: "wf", plan: "b1", start: T.Add(100 * ms), dur: 300 * ms, status: "timeout", code: "T1"},
		{id: "a3", tool: "x", workflow: "wf", plan: "a3", start: T.Add(3 * time.Second), dur: ms},
		// Another workflow's success resolves nothing of wf's.
		{id: "c1", tool: "x", workflow: "other", plan: "c1", start: T.Add(time.Second), dur: ms},
		// A later call, so that a seal covers T's hour.
		{id: "z", tool: "x", workflow: "other", plan: "z", start: now.Add(-time.Hour), dur: ms},
	})
	// a1: a2 started when a1 ended, so a3 resolves it: 2800 ms. b1 ended
	// at T+400ms: a3, 2600 ms.
	check := func(when string) {
		t.Helper()
		rep, err := s.Plans(ctx, now.Add(-3*24*time.Hour), now)
		if err != nil {
			t.Fatal(err)
		}
		var recovered uint64
		var sum float64
		for _, w := range rep.Weeks {
			recovered += w.Recovered
			sum += w.MeanTimeToRecoverMs * float64(w.Recovered)
		}
		if recovered != 2 || sum != 2800+2600 {
			t.Fatalf("%s: %d recovered, %v ms in all; want 2 in 5400 ms (weeks %+v)", when, recovered, sum, rep.Weeks)
		}
	}
	check("grouped at query time")
	if err := s.SealPlans(ctx); err != nil {
		t.Fatal(err)
	}
	if seal, err := s.planSeal(ctx, now); err != nil || seal == nil || !seal.to.After(T.Add(time.Hour)) {
		t.Fatalf("seal %+v %v: want one past T's hour", seal, err)
	}
	check("sealed")
}

func TestPlansKPI(t *testing.T) {
	s := testStore(t)
	now := fixedNow()
	T := now.Add(-2 * time.Hour)
	ms := time.Millisecond
	insertCalls(t, s, []call{
		// Recovery (workflow wf-r): r1 fails at T+1s (ends T+1.2s); r2, the
		// next plan, succeeds from T+5s: recovered after 3.8 s. p2's and
		// p4's failures have no workflow, so they do not count.
		{id: "r1", tool: "x", workflow: "wf-r", plan: "r1", start: T.Add(time.Second), dur: 200 * ms, status: "system_error", code: "E500"},
		{id: "r2", tool: "x", workflow: "wf-r", plan: "r2", start: T.Add(5 * time.Second), dur: 10 * ms},
		{id: "p1a", tool: "x", plan: "p1", start: T, dur: 10 * ms},
		{id: "p1b", tool: "x", plan: "p1", start: T.Add(20 * ms), dur: 10 * ms},
		{id: "p2a", tool: "x", plan: "p2", start: T, dur: 10 * ms},
		{id: "p2b", tool: "x", plan: "p2", start: T.Add(50 * ms), dur: 50 * ms, status: "policy_blocked", code: "DENY1"},
		{id: "p3a", tool: "x", plan: "p3", start: T, dur: 300 * ms, status: "system_error", code: "E500"},
		{id: "p4a", tool: "x", plan: "p4", start: T, dur: 20 * ms, status: "policy_blocked", code: "DENY1"},
		{id: "p4b", tool: "x", plan: "p4", start: T, dur: 500 * ms, status: "system_error", code: "E500"},
		{id: "np", tool: "x", start: T, dur: ms, status: "timeout", code: "T1"},
		// A week earlier, one plan that went fine: no failed plan to
		// take a mean over.
		{id: "e1", tool: "x", plan: "e1", start: T.Add(-7 * 24 * time.Hour), dur: 10 * ms},
		// Three weeks back, early on the Monday.
		{id: "m1", tool: "x", plan: "m1", start: monday(T).AddDate(0, 0, -21).Add(30 * time.Minute), dur: 10 * ms},
	})
	rep, err := s.Plans(context.Background(), now.Add(-14*24*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Weeks) != 2 {
		t.Fatalf("weeks %+v", rep.Weeks)
	}
	if e := rep.Weeks[0]; e.Plans != 1 || e.FailedRate != 0 || e.MeanTimeToDetectMs != 0 || e.MeanTimeToRecoverMs != 0 {
		t.Fatalf("a week without failed plans: %+v, want 1 plan and zero rates and means", e)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatalf("the report is not JSON: %v", err)
	}
	w := rep.Weeks[1]
	// p2, p4 blocked by policy (p4 also failed; policy wins); p3 and r1
	// system errors; p1 and r2 fine: 6 plans, 4 failed.
	// Detection: p2 100 ms, p3 300 ms, p4 20 ms, r1 200 ms (its plan
	// starts with the failing call) → mean 155 ms.
	if w.Plans != 6 || w.PolicyBlocked != 2 || w.SystemErrors != 2 || math.Abs(w.FailedRate-4.0/6) > 1e-9 || math.Abs(w.MeanTimeToDetectMs-155) > 1e-9 {
		t.Fatalf("week %+v", w)
	}
	if w.Recovered != 1 || w.MeanTimeToRecoverMs != 3800 {
		t.Fatalf("recovery: %d plans, %v ms; want 1 plan recovered after 3800 ms", w.Recovered, w.MeanTimeToRecoverMs)
	}
	if wd := w.Week.Weekday(); wd != time.Monday {
		t.Fatalf("week starts on %s", wd)
	}
	// A window starting on the Wednesday of m1's week takes that week
	// whole: m1, on its Monday, is in it.
	early, err := s.Plans(context.Background(), monday(T).AddDate(0, 0, -19), now)
	if err != nil {
		t.Fatal(err)
	}
	if !early.From.Equal(monday(T).AddDate(0, 0, -21)) || len(early.Weeks) != 3 || !early.Weeks[0].Week.Equal(early.From) || early.Weeks[0].Plans != 1 {
		t.Fatalf("a window from a Wednesday: from %v, weeks %+v; want the whole week of %v with m1 in it", early.From, early.Weeks, monday(T).AddDate(0, 0, -21))
	}
	got := fmt.Sprintf("%+v", rep.TopCauses)
	if got != "[{Status:system_error ErrorCode:E500 Calls:3} {Status:policy_blocked ErrorCode:DENY1 Calls:2} {Status:timeout ErrorCode:T1 Calls:1}]" {
		t.Fatalf("top causes %s", got)
	}
	// Per day over the last 8 days: e1's day (1 plan, none failed) and
	// T's day (the 6 plans above).
	ser, err := AlignSeries(now.Add(-8*24*time.Hour), now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	points, err := s.PlanSeries(context.Background(), ser)
	if err != nil || len(points) != 2 {
		t.Fatalf("plan series %+v %v", points, err)
	}
	day := func(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }
	if p := points[0]; !p.Start.Equal(day(T.Add(-7*24*time.Hour))) || p.Plans != 1 || p.FailedRate != 0 {
		t.Errorf("e1's day: %+v", p)
	}
	if p := points[1]; !p.Start.Equal(day(T)) || p.Plans != 6 || p.PolicyBlocked != 2 || p.SystemErrors != 2 || math.Abs(p.FailedRate-4.0/6) > 1e-9 {
		t.Errorf("T's day: %+v", p)
	}
}

func TestOnboardingKPI(t *testing.T) {
	s := testStore(t)
	now := fixedNow()
	insertCalls(t, s, []call{
		{id: "n1", tool: "new-tool", start: now.Add(-5 * time.Hour), dur: time.Millisecond, status: "tool_error"},
		{id: "n2", tool: "new-tool", start: now.Add(-2 * time.Hour), dur: 36 * time.Second},
		{id: "n3", tool: "new-tool", start: now.Add(-time.Hour), dur: time.Millisecond},
		{id: "z1", tool: "never-ok", start: now.Add(-time.Hour), dur: time.Millisecond, status: "system_error"},
	})
	// The same name on another server is another tool.
	other := span("o1", "new-tool", "g", now.Add(-30*time.Minute), time.Millisecond, 100)
	other.Record.Tool.Server = "other-mcp"
	if err := s.Insert(context.Background(), []Span{other}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Onboarding(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].Tool != "never-ok" || rows[0].LeadTimeHours != nil || rows[1].Tool != "new-tool" || rows[1].Server != "" ||
		rows[2].Tool != "new-tool" || rows[2].Server != "other-mcp" || rows[2].Calls != 1 || rows[2].LeadTimeHours == nil || *rows[2].LeadTimeHours > 0.001 {
		t.Fatalf("onboarding %+v", rows)
	}
	// First call 5 h ago; first success ended 2 h − 36 s ago: 3.01 h.
	if lt := *rows[1].LeadTimeHours; math.Abs(lt-3.01) > 1e-9 || rows[1].Calls != 3 {
		t.Fatalf("lead time %v h over %d calls, want 3.01 h over 3", lt, rows[1].Calls)
	}
}

// TestOnboardingBackfill: spans stored before the onboarding rollup
// existed are counted by its backfill (migration 0016), which can run
// again without counting anything twice; a tool whose spans expired is
// still known, from the rollup.
func TestOnboardingBackfill(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	now := fixedNow()
	insertCalls(t, s, []call{
		{id: "a1", tool: "old-tool", start: now.Add(-3 * time.Hour), dur: time.Millisecond, status: "tool_error"},
		{id: "a2", tool: "old-tool", start: now.Add(-2 * time.Hour), dur: time.Second},
		{id: "a3", tool: "old-tool", start: now.Add(-time.Hour), dur: time.Millisecond},
	})
	// As if the store predated the rollup; then the backfill once more.
	rerunBackfill(t, s, []string{"tool_onboarding"}, 16)
	rerunBackfill(t, s, nil, 16)
	// The spans go (as the TTL would take them); onboarding stays.
	if err := s.conn.Exec(ctx, "TRUNCATE TABLE spans"); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Onboarding(ctx)
	if err != nil || len(rows) != 1 || rows[0].Calls != 3 || rows[0].LeadTimeHours == nil {
		t.Fatalf("onboarding after the backfill: %+v (%v)", rows, err)
	}
	// First call 3 h ago; first success ended 2 h ago plus its 1 s.
	if lt := *rows[0].LeadTimeHours; math.Abs(lt-(1+1.0/3600)) > 1e-9 || !rows[0].FirstSeen.Equal(now.Add(-3*time.Hour)) {
		t.Fatalf("lead time %v h from %s", lt, rows[0].FirstSeen)
	}
}

func TestErrorBudgetKPI(t *testing.T) {
	s := testStore(t)
	now := fixedNow()
	ms := time.Millisecond
	var calls []call
	// Last hour: 100 calls, 2 bad (one tool error, one slow), 1 policy block (not counted).
	for i := 0; i < 97; i++ {
		calls = append(calls, call{id: fmt.Sprintf("h1-%d", i), tool: "x", start: now.Add(-30 * time.Minute), dur: 100 * ms})
	}
	calls = append(calls,
		call{id: "h1-err", tool: "x", start: now.Add(-30 * time.Minute), dur: ms, status: "tool_error"},
		call{id: "h1-slow", tool: "x", start: now.Add(-30 * time.Minute), dur: 900 * ms},
		call{id: "h1-ok-edge", tool: "x", start: now.Add(-30 * time.Minute), dur: 500 * ms},
		call{id: "h1-block", tool: "x", start: now.Add(-30 * time.Minute), dur: ms, status: "policy_blocked"},
	)
	// 3 hours ago: 100 calls, 10 bad.
	for i := 0; i < 100; i++ {
		c := call{id: fmt.Sprintf("h3-%d", i), tool: "x", start: now.Add(-3 * time.Hour), dur: 100 * ms}
		if i < 10 {
			c.status = "system_error"
		}
		calls = append(calls, c)
	}
	insertCalls(t, s, calls) // tool group "g"
	rows, err := s.ErrorBudget(context.Background(), []SLO{{Group: "g", Target: 0.99, LatencyMs: 500}}, now)
	if err != nil {
		t.Fatal(err)
	}
	r := rows[0]
	// 1h: 2 bad of 100 → 2% over an allowed 1% → burn 2.
	// 6h: 12 bad of 200 → 6% → burn 6. Month (same calls): budget left 1 − 6 = −5.
	if math.Abs(r.BurnRate1h-2) > 1e-9 || math.Abs(r.BurnRate6h-6) > 1e-9 || math.Abs(r.BudgetLeft+5) > 1e-9 || r.CallsMonth != 200 || r.BadMonth != 12 {
		t.Fatalf("budget %+v", r)
	}
	// The multiwindow pairs: nothing in the last 5 min; the calls 30 min
	// ago in every window from 30m; the ones 3 h ago from 6h. Only 3d/6h
	// (both over 1) fires; 6h/30m needs both over 6. The last 28 days
	// hold the same 200 calls.
	want := map[string]float64{"5m": 0, "30m": 2, "1h": 2, "2h": 2, "6h": 6, "1d": 6, "3d": 6}
	for k, v := range want {
		if math.Abs(r.BurnRates[k]-v) > 1e-9 {
			t.Errorf("burn over %s: %v, want %v", k, r.BurnRates[k], v)
		}
	}
	if fmt.Sprint(r.Firing) != "[3d/6h]" || r.Calls28d != 200 || r.Bad28d != 12 || math.Abs(r.BudgetLeft28d+5) > 1e-9 {
		t.Fatalf("firing %v, 28 days %d/%d left %v", r.Firing, r.Bad28d, r.Calls28d, r.BudgetLeft28d)
	}
	if _, err := s.ErrorBudget(context.Background(), nil, now); !errors.Is(err, ErrNoSLOs) {
		t.Fatalf("no SLOs: %v", err)
	}
	// As a series of hours over the last 4: the hour 3 h ago burns 10%
	// over 1% allowed = 10, the last hour 2 (policy blocks not counted);
	// hours without calls are left out.
	ser, err := AlignSeries(now.Add(-4*time.Hour), now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	series, err := s.BurnSeries(context.Background(), []SLO{{Group: "g", Target: 0.99, LatencyMs: 500}}, ser)
	if err != nil || len(series) != 1 || len(series[0].Points) != 2 {
		t.Fatalf("burn series %+v %v", series, err)
	}
	for i, w := range []BurnPoint{{Start: now.Add(-3 * time.Hour).Truncate(time.Hour), Calls: 100, Bad: 10, BurnRate: 10},
		{Start: now.Add(-30 * time.Minute).Truncate(time.Hour), Calls: 100, Bad: 2, BurnRate: 2}} {
		if p := series[0].Points[i]; !p.Start.Equal(w.Start) || p.Calls != w.Calls || p.Bad != w.Bad || math.Abs(p.BurnRate-w.BurnRate) > 1e-9 {
			t.Errorf("point %d: %+v, want %+v", i, p, w)
		}
	}
}

func TestLoadSLOs(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, fmt.Sprintf("slo-%d.yaml", time.Now().UnixNano()))
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	got, err := LoadSLOs(write("slos:\n  - group: ticketing\n    target: 0.995\n    latency_ms: 300\n"))
	if err != nil || len(got) != 1 || got[0].Target != 0.995 || got[0].LatencyMs != 300 {
		t.Fatalf("load: %+v %v", got, err)
	}
	for _, bad := range []string{
		"slos:\n  - group: a\n    target: 99\n    latency_ms: 300\n",
		"slos:\n  - target: 0.9\n    latency_ms: 300\n",
		"slos:\n  - group: a\n    target: 0.9\n",
		"slos:\n  - group: a\n    target: 0.9\n    latency_ms: 1\n  - group: a\n    target: 0.9\n    latency_ms: 1\n",
		"slos: [",
	} {
		if _, err := LoadSLOs(write(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestBurnRatesAndAmountsWithoutFloatNoise: burn rates and sums of money
// come out as the numbers they are (10, 0.3), not as their binary
// neighbours (9.999999999999991, 0.30000000000000004).
func TestBurnRatesAndAmountsWithoutFloatNoise(t *testing.T) {
	for _, c := range []struct {
		got, want float64
	}{
		{burn(1, 10, 0.99), 10},
		{burn(3, 200, 0.99), 1.5},
		{burn(0, 0, 0.99), 0},
		{roundNoise(0.1 + 0.2), 0.3},
		{roundNoise(11.629999999999995), 11.63},
		{roundNoise(-5.000000000000001), -5},
	} {
		if c.got != c.want {
			t.Errorf("got %v, want %v", c.got, c.want)
		}
	}
}
