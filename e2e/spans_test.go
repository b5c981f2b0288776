package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSpansAndLatencyKPI: records posted to ingest reach the span store
// (the embedded ClickHouse engine) with their evidence pointer, and the
// latency KPI over HTTP gives the quantiles computed by hand.
func TestSpansAndLatencyKPI(t *testing.T) {
	data := t.TempDir()
	slo := filepath.Join(t.TempDir(), "slo.yaml")
	if err := os.WriteFile(slo, []byte("slos:\n  - group: kpi\n    target: 0.9\n    latency_ms: 15\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The plans of finished hours are sealed every second, not minute,
	// so that the plans KPI below is answered from sealed hours.
	s := startServer(t, data, "--slo", slo, "--plan-seal-every", "1s")
	tok := s.token("gw-1", "ingest", "1h")
	q := s.token("sre", "query", "1h")

	now := time.Now().UTC().Add(-time.Minute)
	var recs []map[string]any
	// kpi-search: 1..20 ms; kpi-write: 4 × 50 ms.
	for i := 1; i <= 20; i++ {
		r := record(fmt.Sprintf("kpi-s-%02d", i))
		r["tool"] = map[string]any{"name": "kpi-search", "group": "kpi"}
		r["ts_start"] = now.Format(time.RFC3339Nano)
		r["ts_end"] = now.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)
		recs = append(recs, r)
	}
	for i := 0; i < 4; i++ {
		r := record(fmt.Sprintf("kpi-w-%02d", i))
		r["tool"] = map[string]any{"name": "kpi-write", "group": "kpi"}
		r["ts_start"] = now.Format(time.RFC3339Nano)
		r["ts_end"] = now.Add(50 * time.Millisecond).Format(time.RFC3339Nano)
		recs = append(recs, r)
	}
	body := jsonArray(t, recs...)
	for i := 0; i < 2; i++ { // the retry must not double the counts
		if code, _, _, err := s.post(tok, body, nil); err != nil || code != 202 {
			t.Fatalf("post: %d %v", code, err)
		}
	}
	type row struct {
		Key   string  `json:"key"`
		Calls uint64  `json:"calls"`
		P50   float64 `json:"p50_ms"`
		P95   float64 `json:"p95_ms"`
		P99   float64 `json:"p99_ms"`
	}
	var got struct {
		Rows []row `json:"rows"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, raw := s.get(q, "/v1/kpi/latency?by=tool&window=1d")
		if code != http.StatusOK {
			t.Fatalf("kpi latency: %d %s", code, raw)
		}
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		total := uint64(0)
		for _, r := range got.Rows {
			total += r.Calls
		}
		if total >= 24 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans did not arrive: %s\n%s", raw, s.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// ⌊q·n⌋-th smallest (0-based): 20 values 1..20 → p50 = 11, p95 = 20.
	want := []row{{"kpi-search", 20, 11, 20, 20}, {"kpi-write", 4, 50, 50, 50}}
	// The default answer comes from the rollups: counts exact, quantiles
	// within 1%.
	if len(got.Rows) != len(want) {
		t.Fatalf("latency by tool: %+v", got.Rows)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 0.01*b }
	for i, w := range want {
		g := got.Rows[i]
		if g.Key != w.Key || g.Calls != w.Calls || !near(g.P50, w.P50) || !near(g.P95, w.P95) || !near(g.P99, w.P99) {
			t.Fatalf("latency by tool (rollup)\n got %+v\nwant %+v within 1%%", got.Rows, want)
		}
	}
	// exact=true reads every span: the fixture's numbers exactly.
	code, raw := s.get(q, "/v1/kpi/latency?by=tool&window=1d&exact=true")
	if err := json.Unmarshal(raw, &got); code != http.StatusOK || err != nil {
		t.Fatalf("kpi latency exact: %d %s", code, raw)
	}
	if fmt.Sprint(got.Rows) != fmt.Sprint(want) {
		t.Fatalf("latency by tool (exact)\n got %+v\nwant %+v", got.Rows, want)
	}
	// The CLI prints the same numbers as a table.
	out, errOut, code := cli(t, "kpi", "latency", "--server", s.url, "--token", q, "--window", "1d", "--exact")
	if code != 0 || !strings.Contains(out, "kpi-search") || !strings.Contains(out, "20.0") {
		t.Fatalf("proofline kpi latency: exit %d\n%s%s", code, out, errOut)
	}
	// Over time: from/to with a step of an hour give one point per tool
	// (every call started at now), holding the same calls as the totals.
	rng := url.Values{"by": {"tool"}, "from": {now.Add(-30 * time.Minute).Format(time.RFC3339)},
		"to": {now.Add(30 * time.Minute).Format(time.RFC3339)}, "step": {"1h"}, "exact": {"true"}}
	code, raw = s.get(q, "/v1/kpi/latency?"+rng.Encode())
	var series struct {
		StepSeconds int64 `json:"step_seconds"`
		Series      []struct {
			Key    string `json:"key"`
			Points []struct {
				Start time.Time `json:"start"`
				Calls uint64    `json:"calls"`
				P50   float64   `json:"p50_ms"`
			} `json:"points"`
		} `json:"series"`
	}
	if err := json.Unmarshal(raw, &series); code != http.StatusOK || err != nil || series.StepSeconds != 3600 || len(series.Series) != 2 {
		t.Fatalf("kpi latency series: %d %s", code, raw)
	}
	for i, w := range want {
		sr := series.Series[i]
		if sr.Key != w.Key || len(sr.Points) != 1 || sr.Points[0].Calls != w.Calls || sr.Points[0].P50 != w.P50 || !sr.Points[0].Start.Equal(now.Truncate(time.Hour)) {
			t.Fatalf("series of %s: %+v, want one point of the hour of %s with %d calls, p50 %v", w.Key, sr, now, w.Calls, w.P50)
		}
	}
	if code, raw := s.get(q, "/v1/kpi/latency?step=90s"); code != http.StatusBadRequest {
		t.Fatalf("a step of 90 s: %d %s", code, raw)
	}
	out, errOut, code = cli(t, "kpi", "latency", "--server", s.url, "--token", q, "--from", rng.Get("from"), "--to", rng.Get("to"), "--step", "1h")
	if code != 0 || !strings.Contains(out, "step start") || !strings.Contains(out, now.Truncate(time.Hour).Format(time.RFC3339)) {
		t.Fatalf("proofline kpi latency --step: exit %d\n%s%s", code, out, errOut)
	}
	// Spans, paged with a cursor, each with its evidence pointer.
	var ids []string
	eachSpan(t, s, q, "tool=kpi-search&limit=8", func(id, origin string) {
		if origin != "e2e.proofline.test/log" {
			t.Fatalf("span %s has evidence origin %q", id, origin)
		}
		ids = append(ids, id)
	})
	if len(ids) != 20 {
		t.Fatalf("paged %d spans of kpi-search, want 20: %v", len(ids), ids)
	}
	// The other KPI reports answer over HTTP and the CLI (their numbers are
	// checked against fixtures in query/spanstore).
	code, raw = s.get(q, "/v1/kpi/onboarding")
	var ob struct {
		Tools []struct {
			Tool          string   `json:"tool"`
			LeadTimeHours *float64 `json:"lead_time_hours"`
		} `json:"tools"`
	}
	if code != 200 || json.Unmarshal(raw, &ob) != nil || len(ob.Tools) != 2 || ob.Tools[0].LeadTimeHours == nil {
		t.Fatalf("onboarding: %d %s", code, raw)
	}
	// Error budget: of the 24 calls, 5 search (16..20 ms) and 4 write
	// (50 ms) are over the 15 ms objective: 9/24 bad against 10% allowed.
	code, raw = s.get(q, "/v1/kpi/errorbudget")
	var eb struct {
		SLOs []struct {
			Group      string  `json:"group"`
			BurnRate1h float64 `json:"burn_rate_1h"`
			BadMonth   uint64  `json:"bad_month"`
		} `json:"slos"`
	}
	if code != 200 || json.Unmarshal(raw, &eb) != nil || len(eb.SLOs) != 1 || eb.SLOs[0].BurnRate1h < 3.74 || eb.SLOs[0].BurnRate1h > 3.76 {
		t.Fatalf("error budget: %d %s", code, raw)
	}
	// As a series of hours, and as it stood before the calls (at).
	code, raw = s.get(q, "/v1/kpi/errorbudget?"+url.Values{"step": {"1h"}, "from": {rng.Get("from")}, "to": {rng.Get("to")},
		"at": {now.Add(-10 * time.Minute).Format(time.RFC3339)}}.Encode())
	var ebs struct {
		SLOs []struct {
			CallsMonth uint64 `json:"calls_month"`
		} `json:"slos"`
		Series []struct {
			Group  string `json:"group"`
			Points []struct {
				Calls, Bad uint64
				BurnRate   float64 `json:"burn_rate"`
			} `json:"points"`
		} `json:"series"`
	}
	if code != 200 || json.Unmarshal(raw, &ebs) != nil || len(ebs.Series) != 1 || len(ebs.Series[0].Points) != 1 || len(ebs.SLOs) != 1 || ebs.SLOs[0].CallsMonth != 0 {
		t.Fatalf("error budget series: %d %s", code, raw)
	}
	if p := ebs.Series[0].Points[0]; p.Calls != 24 || p.Bad != 9 || p.BurnRate < 3.74 || p.BurnRate > 3.76 {
		t.Fatalf("error budget series point: %+v", p)
	}
	// Two plans, 20 days and an hour old: the plans KPI's default window
	// (28 days) holds both weeks, whether asked over HTTP or by the CLI.
	var plans []map[string]any
	for i, age := range []time.Duration{20 * 24 * time.Hour, time.Hour} {
		r := record(fmt.Sprintf("plan-%d", i))
		start := time.Now().UTC().Add(-age)
		r["ts_start"], r["ts_end"] = start.Format(time.RFC3339Nano), start.Add(time.Millisecond).Format(time.RFC3339Nano)
		r["plan_id"] = fmt.Sprintf("plan-%d", i)
		plans = append(plans, r)
	}
	if code, _, pr, err := s.post(tok, jsonArray(t, plans...), nil); err != nil || code != 202 || pr.Accepted != 2 {
		t.Fatalf("post plans: %d %+v %v", code, pr, err)
	}
	waitSpans(t, s, q, []string{"plan-0", "plan-1"})
	// plan-0 began more than the default longest plan (2 hours) before
	// the hour that ended half an hour before the latest call: serve
	// seals it, and the answers below come from the sealed counts for it.
	waitFor(t, "the span role seals the plans of finished hours", func() (bool, string) {
		return strings.Contains(s.logs(), `"msg":"plans sealed"`), ""
	})
	// Plans per day: one point for each plan's day.
	code, raw = s.get(q, "/v1/kpi/plans?"+url.Values{"step": {"24h"}, "from": {time.Now().UTC().Add(-21 * 24 * time.Hour).Format(time.RFC3339)}}.Encode())
	var ps struct {
		Series []struct {
			Start time.Time `json:"start"`
			Plans uint64    `json:"plans"`
		} `json:"series"`
	}
	if err := json.Unmarshal(raw, &ps); code != 200 || err != nil || len(ps.Series) != 2 || ps.Series[0].Plans != 1 || ps.Series[1].Plans != 1 {
		t.Fatalf("plans series: %d %s", code, raw)
	}
	if code, raw := s.get(q, "/v1/kpi/cost?step=1d"); code != 200 || !strings.Contains(string(raw), `"series":`) {
		t.Fatalf("cost series: %d %s", code, raw)
	}
	if code, _ := s.get(q, "/v1/kpi/cost?at=yesterday"); code != http.StatusBadRequest {
		t.Fatalf("a bad at: %d", code)
	}
	// The CLI prints the series as a second table: one row per day with
	// a plan, each holding one.
	out, errOut, code = cli(t, "kpi", "plans", "--server", s.url, "--token", q, "--step", "24h", "--window", "21d")
	_, table, ok := strings.Cut(out, "STEP START")
	var rows [][]string
	for _, line := range strings.Split(table, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 {
			rows = append(rows, f)
		}
	}
	if code != 0 || !ok || len(rows) != 2 || rows[0][1] != "1" || rows[1][1] != "1" {
		t.Fatalf("proofline kpi plans --step: exit %d, series rows %q\n%s%s", code, rows, out, errOut)
	}
	for _, kind := range []string{"errorbudget", "cost"} {
		out, errOut, code := cli(t, "kpi", kind, "--server", s.url, "--token", q, "--step", "1h")
		if code != 0 || !strings.Contains(out, "step start") && !strings.Contains(out, "STEP START") {
			t.Fatalf("proofline kpi %s --step: exit %d, no series table\n%s%s", kind, code, out, errOut)
		}
	}
	// The weekly report of this week: one HTML file with the KPIs' tables
	// and charts and the log's checkpoint.
	y, wk := time.Now().UTC().ISOWeek()
	reportFile := filepath.Join(t.TempDir(), "report.html")
	if out, errOut, code := cli(t, "report", "--server", s.url, "--token", q, "--week", fmt.Sprintf("%04d-W%02d", y, wk), "--out", reportFile); code != 0 {
		t.Fatalf("proofline report: exit %d\n%s%s", code, out, errOut)
	}
	html, err := os.ReadFile(reportFile)
	if err != nil {
		t.Fatal(err)
	}
	// This week is not over: the report says its data ends now.
	for _, want := range []string{"kpi-search", "<svg", "e2e.proofline.test/log", `<td>kpi</td>`, "plan", "partial week: data up to", "</html>"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	ny, nwk := time.Now().UTC().AddDate(0, 0, 14).ISOWeek()
	if _, errOut, code := cli(t, "report", "--server", s.url, "--token", q, "--week", fmt.Sprintf("%04d-W%02d", ny, nwk), "--out", reportFile); code != 2 || !strings.Contains(errOut, "has not started") {
		t.Fatalf("proofline report of a week to come: exit %d %s, want 2 and why", code, errOut)
	}
	for _, kind := range []string{"cost", "plans", "errorbudget", "onboarding"} {
		code, raw := s.get(q, "/v1/kpi/"+kind)
		if code != 200 || !json.Valid(raw) {
			t.Fatalf("/v1/kpi/%s: %d %s\n%s", kind, code, raw, s.logs())
		}
		out, errOut, code := cli(t, "kpi", kind, "--server", s.url, "--token", q, "--json")
		if code != 0 || !json.Valid([]byte(out)) {
			t.Fatalf("proofline kpi %s --json: exit %d\n%s%s", kind, code, out, errOut)
		}
		if kind == "plans" {
			// The CLI asks the server's question: the same default window.
			var api, cliAns struct {
				Weeks []json.RawMessage `json:"weeks"`
			}
			if json.Unmarshal(raw, &api) != nil || json.Unmarshal([]byte(out), &cliAns) != nil || len(api.Weeks) != 2 || len(cliAns.Weeks) != 2 {
				t.Fatalf("kpi plans: the API's default answer has %d weeks with plans, the CLI's %d; want both weeks of the 28 days", len(api.Weeks), len(cliAns.Weeks))
			}
		}
		if out, errOut, code := cli(t, "kpi", kind, "--server", s.url, "--token", q); code != 0 || json.Valid([]byte(out)) || len(out) == 0 {
			t.Fatalf("proofline kpi %s (table): exit %d\n%s%s", kind, code, out, errOut)
		}
	}
	if code, _ := s.get(q, "/v1/spans?cursor=forged"); code != http.StatusBadRequest {
		t.Fatalf("forged cursor: %d, want 400", code)
	}
	if code, _ := s.get(tok, "/v1/kpi/latency"); code != http.StatusForbidden {
		t.Fatalf("ingest token on the KPI API: %d, want 403", code)
	}
	if code, _ := s.get(q, "/v1/kpi/latency?by=actor"); code != http.StatusBadRequest {
		t.Fatalf("by=actor: %d, want 400", code)
	}
	if code, _ := s.get(q, "/v1/kpi/latency?window=soon"); code != http.StatusBadRequest {
		t.Fatalf("window=soon: %d, want 400", code)
	}
	// Times the engine cannot hold, or the zero time (which would read
	// as "now"), are the caller's error, not a 500 or a wrong answer.
	for _, path := range []string{
		"/v1/spans?from=9999-12-31T00:00:00Z",
		"/v1/kpi/latency?from=9999-12-31T23:00:00Z&to=9999-12-31T23:59:00Z",
		"/v1/kpi/errorbudget?at=0001-01-01T00:00:00Z",
		"/v1/kpi/cost?at=1969-12-31T00:00:00Z",
	} {
		if code, raw := s.get(q, path); code != http.StatusBadRequest || !strings.Contains(string(raw), "from 1970 to 2100") {
			t.Fatalf("%s: %d %s, want 400 naming the range", path, code, raw)
		}
	}
	// A misspelt or misplaced parameter is refused, not ignored (the
	// answer would look like one for the filter asked).
	for path, want := range map[string]string{
		"/v1/spans?toool=kpi-search":                                  `unknown parameter \"toool\"`,
		"/v1/kpi/cost?currency=EUR":                                   `unknown parameter \"currency\"`,
		"/v1/kpi/onboarding?tool=x":                                   `unknown parameter \"tool\"`,
		"/v1/spans?status=bogus":                                      "status must be one of",
		"/v1/spans?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z": "from must be before to",
		"/v1/spans?from=yesterday&to=tomorrow":                        "from must be an RFC 3339 time; to must be an RFC 3339 time",
		"/v1/kpi/latency?from=yesterday&to=tomorrow":                  "from must be an RFC 3339 time; to must be an RFC 3339 time",
		"/v1/kpi/errorbudget?from=2026-11-01T00:00:00Z":               "add step",
		"/v1/kpi/plans?to=2026-11-01T00:00:00Z":                       "add step",
		"/v1/kpi/latency?step=0":                                      `step \"0\"`,
	} {
		if code, raw := s.get(q, path); code != http.StatusBadRequest || !strings.Contains(string(raw), want) {
			t.Errorf("%s: %d %s, want 400 with %s", path, code, raw, want)
		}
	}
}
