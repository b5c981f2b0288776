package mcphook

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/proofline/proofline/internal/testutil"
	"github.com/proofline/proofline/schemas"
)

// budgetCounts reads the budget counters (soft, refused) by budget.
func budgetCounts(t *testing.T, rd *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && strings.HasPrefix(m.Name, "proofline.mcphook.budget.") {
				for _, p := range d.DataPoints {
					b, _ := p.Attributes.Value("budget")
					out[strings.TrimPrefix(m.Name, "proofline.mcphook.budget.")+" "+b.AsString()] += p.Value
				}
			}
		}
	}
	return out
}

// TestBudgetCapsCalls: a daily budget of five calls on one tool admits
// five, marks those past its soft share, and refuses the sixth without
// running the tool (policy_blocked, CodeBudgetExceeded, rule
// budget:NAME); other tools are not covered.
func TestBudgetCapsCalls(t *testing.T) {
	rd := sdkmetric.NewManualReader()
	h := newHarness(t, Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)),
		Budgets: []Budget{{Name: "search-daily", Tool: "search_tickets", Period: PeriodDay, MaxCalls: 5, Soft: 0.6}}}, "")
	for i := range 5 {
		if _, err := h.call("search_tickets", args{"query": "x"}, nil); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := h.call("search_tickets", args{"query": "x"}, nil)
	if err == nil {
		t.Fatal("the sixth call went through a spent budget")
	}
	if we := wireError(t, err); we.Code != CodeBudgetExceeded || !strings.Contains(we.Message, "5 of 5 calls this day") {
		t.Fatalf("answered %d %q", we.Code, we.Message)
	}
	if n := h.calls["search_tickets"].Load(); n != 5 {
		t.Fatalf("the tool ran %d times", n)
	}
	if _, err := h.call("delete_ticket", nil, nil); err != nil {
		t.Fatalf("a tool the budget does not cover: %v", err)
	}
	recs := h.records(7)
	var marks []string
	for _, r := range recs[:5] {
		marks = append(marks, r.Attributes["proofline.budget.search-daily"])
	}
	if strings.Join(marks, ",") != ",,0.60,0.80,1.00" {
		t.Errorf("soft marks %q, want the calls from 60%% on marked", marks)
	}
	if r := recs[5]; r.Outcome.Status != schemas.StatusPolicyBlocked || r.Outcome.ErrorCode != fmt.Sprint(CodeBudgetExceeded) ||
		r.Policy.Decision != schemas.DecisionDeny || r.Policy.Rule != "budget:search-daily" || !strings.Contains(r.Policy.Reason, "renews at") {
		t.Errorf("refused call's record %+v %+v", r.Outcome, r.Policy)
	}
	if got := budgetCounts(t, rd); got["soft search-daily"] != 3 || got["refused search-daily"] != 1 {
		t.Errorf("budget metrics %v", got)
	}
}

// TestBudgetCapsDeclaredCostPerCaller: a tool's declared cost goes into
// each record and counts against a per-caller cost budget; each caller
// has its own.
func TestBudgetCapsDeclaredCostPerCaller(t *testing.T) {
	h := newHarness(t, Config{
		Tools:   map[string]ToolConfig{"crm_read": {Cost: 0.40, Currency: "USD"}},
		Budgets: []Budget{{Name: "crm-spend", Tool: "crm_read", PerPrincipal: true, Period: PeriodMonth, MaxCost: 1, Currency: "USD"}},
		Identify: func(_ context.Context, req mcp.Request) Identity {
			p, _ := req.GetParams().(*mcp.CallToolParamsRaw)
			who, _ := p.Meta["who"].(string)
			return Identity{ID: who, Type: schemas.ActorAgent}
		},
	}, "")
	call := func(who string) int64 {
		_, err := h.call("crm_read", nil, mcp.Meta{"who": who})
		if err != nil {
			return wireError(t, err).Code
		}
		return 0
	}
	got := []int64{call("a"), call("a"), call("a"), call("b")}
	if fmt.Sprint(got) != fmt.Sprint([]int64{0, 0, CodeBudgetExceeded, 0}) {
		t.Fatalf("answers %v: want two of a's calls (0.80 USD), the third (1.20) refused, b's own budget untouched", got)
	}
	recs := h.records(4)
	if c := recs[0].Cost; c == nil || c.Amount != 0.4 || c.Currency != "USD" {
		t.Errorf("record's cost %+v", c)
	}
	if recs[2].Cost != nil || !strings.Contains(recs[2].Policy.Reason, "0.8 of 1 USD this month, and the call costs 0.4") {
		t.Errorf("refused call's record %+v %+v", recs[2].Cost, recs[2].Policy)
	}
}

// TestBudgetSharedThroughTheStore: two hooked servers (replicas) share a
// budget through a JetStream key-value bucket: what one spent the other
// counts; concurrent spending loses no update; and a server started
// afterwards (a restart) starts from the store, not from zero.
func TestBudgetSharedThroughTheStore(t *testing.T) {
	ctx := context.Background()
	first := newHarness(t, Config{}, "")
	kv, err := OpenBudgetStore(ctx, first.bus.JS)
	if err != nil {
		t.Fatal(err)
	}
	budget := []Budget{{Name: "shared", Tool: "search_tickets", Period: PeriodDay, MaxCalls: 10}, {Name: "many", Tool: "crm_read", Period: PeriodDay, MaxCalls: 1000}}
	replica := func() *harness {
		return newHarness(t, Config{Budgets: budget, BudgetStore: kv, BudgetSync: 20 * time.Millisecond}, "")
	}
	stored := func(name string) int64 {
		id, _ := budget[0].window(time.Now())
		u, _, err := (&budgets{kv: kv}).read(ctx, "budget."+name+"."+id+".all")
		if err != nil {
			t.Fatal(err)
		}
		return u.Calls
	}
	a, b := replica(), replica()
	for range 6 {
		if _, err := a.call("search_tickets", args{"query": "x"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return stored("shared") == 6 }, "replica a's six calls in the store")
	var answers []string
	for range 5 {
		_, err := b.call("search_tickets", args{"query": "x"}, nil)
		answers = append(answers, fmt.Sprint(err == nil))
	}
	if strings.Join(answers, ",") != "true,true,true,true,false" {
		t.Fatalf("replica b's calls went through: %v; want four (10 − 6) then a refusal", answers)
	}

	// Both replicas at once: the store's compare-and-set keeps every call.
	var wg sync.WaitGroup
	for _, h := range []*harness{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 30 {
				if _, err := h.call("crm_read", nil, nil); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	testutil.Eventually(t, 5*time.Second, func() bool { return stored("many") == 60 }, "60 concurrent calls counted in the store")

	// A server started now (or restarted) reads the spent budget.
	testutil.Eventually(t, 5*time.Second, func() bool { return stored("shared") == 10 }, "the shared budget's ten calls in the store")
	c := replica()
	if _, err := c.call("search_tickets", args{"query": "x"}, nil); err == nil || wireError(t, err).Code != CodeBudgetExceeded {
		t.Fatalf("a newly started replica answered %v, want the spent budget's refusal", err)
	}
}

// TestBudgetConfigErrors: budgets that cannot work are refused by New.
func TestBudgetConfigErrors(t *testing.T) {
	checkConfigErrors(t, []configErrorCase{
		{"no cap", Config{Budgets: []Budget{{Name: "b", Period: PeriodDay}}}, "neither MaxCalls nor MaxCost"},
		{"bad period", Config{Budgets: []Budget{{Name: "b", Period: "week", MaxCalls: 1}}}, `period "week"`},
		{"bad name", Config{Budgets: []Budget{{Name: "a b", Period: PeriodDay, MaxCalls: 1}}}, "letters, digits"},
		{"cost without currency", Config{Budgets: []Budget{{Name: "b", Period: PeriodDay, MaxCost: 5}}}, "needs a Currency"},
		{"twice", Config{Budgets: []Budget{{Name: "b", Period: PeriodDay, MaxCalls: 1}, {Name: "b", Period: PeriodHour, MaxCalls: 1}}}, "defined twice"},
		{"currencies differ", Config{Tools: map[string]ToolConfig{"t": {Cost: 1, Currency: "EUR"}},
			Budgets: []Budget{{Name: "b", Period: PeriodDay, MaxCost: 5, Currency: "USD"}}}, "declares its cost in \"EUR\""},
		{"tool cost without currency", Config{Tools: map[string]ToolConfig{"t": {Cost: 1}}}, "needs to be finite"},
	})
}

// TestBudgetWithTheStoreAway: with the budget store unreachable, calls
// are decided on what this process spent — the cap still holds for its
// own calls — instead of failing or waiting on the store.
func TestBudgetWithTheStoreAway(t *testing.T) {
	ctx := context.Background()
	other := newHarness(t, Config{}, "")
	kv, err := OpenBudgetStore(ctx, other.bus.JS)
	if err != nil {
		t.Fatal(err)
	}
	other.bus.Close() // the store's NATS is gone
	h := newHarness(t, Config{Budgets: []Budget{{Name: "b", Tool: "search_tickets", Period: PeriodDay, MaxCalls: 2}}, BudgetStore: kv, BudgetSync: 20 * time.Millisecond}, "")
	var got []string
	for range 3 {
		_, err := h.call("search_tickets", args{"query": "x"}, nil)
		if err != nil {
			got = append(got, fmt.Sprint(wireError(t, err).Code))
		} else {
			got = append(got, "ok")
		}
	}
	if strings.Join(got, ",") != "ok,ok,"+fmt.Sprint(CodeBudgetExceeded) {
		t.Fatalf("answers %v with the store away", got)
	}
}
