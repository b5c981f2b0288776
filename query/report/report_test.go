package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/proofline/proofline/query/spanstore"
)

func TestParseWeek(t *testing.T) {
	for _, tc := range []struct {
		in   string
		from string
		ok   bool
	}{
		{"2026-W48", "2026-11-23", true},
		{"2026-W01", "2025-12-29", true}, // week 1 starts in the year before
		{"2020-W53", "2020-12-28", true},
		{"2021-W53", "", false}, // 2021 has 52 weeks
		{"2026-W00", "", false},
		{"2026-48", "", false},
	} {
		w, err := ParseWeek(tc.in)
		if (err == nil) != tc.ok || tc.ok && (w.From.Format("2006-01-02") != tc.from || w.To.Sub(w.From) != 7*24*time.Hour) {
			t.Errorf("ParseWeek(%q) = %+v, %v", tc.in, w, err)
		}
	}
	if w := WeekOf(time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC)); w.Label != "2026-W48" {
		t.Errorf("WeekOf a Sunday: %+v", w)
	}
}

// text is the text of the element with id, from the parsed document.
func text(t *testing.T, doc *html.Node, id string) string {
	t.Helper()
	var find func(*html.Node) *html.Node
	find = func(n *html.Node) *html.Node {
		for _, a := range n.Attr {
			if a.Key == "id" && a.Val == id {
				return n
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if f := find(c); f != nil {
				return f
			}
		}
		return nil
	}
	n := find(doc)
	if n == nil {
		t.Fatalf("no element #%s", id)
	}
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data + " ")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// TestRenderIsSelfContained: the report parses as HTML, holds its
// numbers in its tables and its charts as inline SVG with one point per
// day of data, escapes what came from the data, and refers to nothing
// outside itself.
func TestRenderIsSelfContained(t *testing.T) {
	w, _ := ParseWeek("2026-W48")
	day := func(i int) time.Time { return w.From.AddDate(0, 0, i) }
	lead := 2.5
	d := Data{
		Week: w, Generated: w.To.Add(time.Hour), Server: "https://proofline.example",
		Latency: []spanstore.LatencyRow{{Key: "search<script>", Calls: 120, P50ms: 11, P95ms: 40.5, P99ms: 90}},
		LatencyDays: []spanstore.LatencySeries{{Key: "search<script>", Points: []spanstore.LatencyPoint{
			{Start: day(0), Calls: 60, P95ms: 30}, {Start: day(3), Calls: 60, P95ms: 50}}}},
		Budgets: []spanstore.BudgetRow{{SLO: spanstore.SLO{Group: "ticketing", Target: 0.99}, BurnRate1h: 2, BurnRate6h: 6,
			BudgetLeft: -0.5, BudgetLeft28d: 0.25, CallsMonth: 1000, BadMonth: 15, Firing: []string{"3d/6h"}}},
		Burn:     []spanstore.BurnSeries{{Group: "ticketing", Points: []spanstore.BurnPoint{{Start: day(1), Calls: 10, Bad: 1, BurnRate: 10}}}},
		Cost:     &spanstore.CostReport{Currency: "USD", MonthStart: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Total: 42.5, MonthlyCap: 300, ProjectedTotal: 310, OverCap: true},
		CostDays: []spanstore.CostPoint{{Start: day(0), Calls: 3, Amount: 5}, {Start: day(6), Calls: 3, Amount: 7}},
		Plans: &spanstore.PlanReport{From: w.From, Weeks: []spanstore.PlanWeek{{Week: w.From, Plans: 6, PolicyBlocked: 2, SystemErrors: 2, FailedRate: 4.0 / 6, MeanTimeToDetectMs: 155}},
			TopCauses: []spanstore.FailureCause{{Status: "system_error", ErrorCode: "E500", Calls: 3}}},
		Onboarding: []spanstore.OnboardingRow{{Server: "jira", Tool: "search", FirstSeen: day(0), LeadTimeHours: &lead, Calls: 4}},
		Evidence:   Evidence{Origin: "proofline.example/log", TreeSize: 123456, Checkpoint: "proofline.example/log\n123456\nAAAA\n\n— key sig\n", DeadLetters: 2},
	}
	var buf bytes.Buffer
	if err := Render(&buf, d); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][]string{
		"slo-table":        {"ticketing", "99.0%", "98.50%", "-50.0%", "25.0%", "3d/6h"},
		"latency-table":    {"search<script>", "120", "40.5"},
		"cost-table":       {"42.5", "300", "310", "2026-11-01"},
		"plans-table":      {"6", "2", "66.7%", "0.155 s"},
		"causes-table":     {"system_error", "E500"},
		"onboarding-table": {"jira / search", "2.5 h"},
		"evidence-table":   {"proofline.example/log", "123456", "2"},
		"checkpoint":       {"— key sig"},
	} {
		got := text(t, doc, id)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("#%s: %q lacks %q", id, got, w)
			}
		}
	}
	if n := strings.Count(out, "<svg"); n != 4 {
		t.Errorf("%d charts, want 4", n)
	}
	if n := strings.Count(out, `class="point"`); n != 2+1+2+0 {
		t.Errorf("%d chart points, want one per day with data (5)", n)
	}
	if strings.Contains(out, "<script") || strings.Contains(out, "src=") || strings.Contains(out, "href=") || strings.Contains(out, "@import") {
		t.Error("the report has a script or refers to something outside itself")
	}
	if !strings.Contains(out, "search&lt;script&gt;") {
		t.Error("a tool name from the data is not escaped")
	}
}

// TestRenderMarksAPartialWeek: a week reported before its end says where
// its data stops; a whole week says nothing of the kind. Either, without
// calls, says there were none.
func TestRenderMarksAPartialWeek(t *testing.T) {
	w, _ := ParseWeek("2026-W49")
	until := w.From.Add(58*time.Hour + 30*time.Minute)
	for _, c := range []struct {
		until time.Time
		want  bool
	}{{until, true}, {time.Time{}, false}} {
		var buf bytes.Buffer
		if err := Render(&buf, Data{Week: w, Generated: w.From.Add(59 * time.Hour), Until: c.until}); err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(buf.String(), "partial week: data up to 2026-12-02T10:30:00Z")
		if got != c.want || strings.Contains(buf.String(), "partial week") != c.want {
			t.Errorf("until %v: marked partial %v, want %v", c.until, got, c.want)
		}
		// No calls: the latency section says so rather than an empty table.
		if !strings.Contains(buf.String(), "No tool calls ran in this week.") {
			t.Error("a week without calls has no word on latency")
		}
	}
}
