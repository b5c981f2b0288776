package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/internal/testutil"
)

// runInChromium runs testdata/script (with testdata/chromium.mjs beside
// it) under Node with args against the server s, driving Debian's Chromium ($CHROMIUM, default
// /usr/bin/chromium), and returns what it printed. Screenshots go to
// $PROOFLINE_SCREENSHOTS (default $TMPDIR/proofline-screenshots), which
// the test log names, for people to look at.
func runInChromium(t *testing.T, s *server, within time.Duration, script string, args ...string) []byte {
	t.Helper()
	prefix, node := testutil.NPMTools(t)
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Chromium is not installed at %s (run scripts/setup.sh, or set CHROMIUM): %v", chromium, err)
	}
	shots := os.Getenv("PROOFLINE_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "proofline-screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	path := nodeScript(t, prefix, script)
	launch, err := os.ReadFile(filepath.Join("testdata", "chromium.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "chromium.mjs"), launch, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "SHOTS="+shots)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s in Chromium failed: %v\n%s\n%s", script, err, stderr.String(), s.logs())
	}
	t.Logf("screenshots of %s in %s", script, shots)
	return stdout.Bytes()
}

// consoleSaw is what testdata/console.mjs read off the console's pages in
// Chromium.
type consoleSaw struct {
	Errors   []string `json:"errors"`
	Fatal    string   `json:"fatal"`
	HTML     string   `json:"html"`
	BadToken string   `json:"badToken"`
	Pages    map[string]struct {
		Title   string                         `json:"title"`
		Alert   *string                        `json:"alert"`
		Tables  map[string][]map[string]string `json:"tables"`
		Figures map[string]string              `json:"figures"`
		Charts  []struct {
			Title string `json:"title"`
			Drawn bool   `json:"drawn"`
			Refs  []struct {
				Label string  `json:"label"`
				V     float64 `json:"v"`
			} `json:"refs"`
			Series []struct {
				Name   string `json:"name"`
				Points []struct {
					T string  `json:"t"`
					V float64 `json:"v"`
				} `json:"points"`
			} `json:"series"`
		} `json:"charts"`
	} `json:"pages"`
	Record map[string]struct {
		Verdict string `json:"verdict"`
		Text    string `json:"text"`
		Steps   []struct {
			Name string `json:"name"`
			OK   bool   `json:"ok"`
		} `json:"steps"`
	} `json:"record"`
	Paging struct {
		First  []string `json:"first"`
		Second []string `json:"second"`
	} `json:"paging"`
	Report struct {
		Title string `json:"title"`
		SVGs  []struct {
			W float64 `json:"w"`
			H float64 `json:"h"`
		} `json:"svgs"`
		Tables int `json:"tables"`
	} `json:"report"`
}

// TestConsoleInChromium loads every console page in headless Chromium
// against a seeded server and checks that what is drawn is what the API
// answers: each table cell, each chart point, the cost figures (and that
// the month's daily spend adds up to its total), the record page's proof
// (✓ as served; rejected, naming the failed step, when the bundle is
// tampered with in flight or the pinned key is not the log's), and the
// weekly report rendered. Screenshots go to $PROOFLINE_SCREENSHOTS (or a
// temporary directory the log names) for people to look at.
func TestConsoleInChromium(t *testing.T) {
	slo := filepath.Join(t.TempDir(), "slo.yaml")
	if err := os.WriteFile(slo, []byte("slos:\n  - group: ticketing\n    target: 0.95\n    latency_ms: 100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), "--slo", slo, "--cost-monthly-cap", "40")
	tok := s.token("gw-1", "ingest", "1h")
	q := s.token("sre", "query", "1h")

	// Three tools on two servers; the same name on both is two tools.
	now := time.Now().UTC().Add(-5 * time.Minute)
	var recs []map[string]any
	var all []string
	add := func(id, server, name string, ms int, status string, cost float64) {
		r := record(id)
		r["tool"] = map[string]any{"name": name, "server": server, "group": "ticketing"}
		start := now.Add(time.Duration(len(recs)) * time.Millisecond)
		r["ts_start"], r["ts_end"] = start.Format(time.RFC3339Nano), start.Add(time.Duration(ms)*time.Millisecond).Format(time.RFC3339Nano)
		r["outcome"] = map[string]any{"status": status}
		if status != "ok" {
			r["outcome"].(map[string]any)["error_code"] = "E_" + strings.ToUpper(status)
		}
		r["cost"] = map[string]any{"amount": cost, "currency": "USD"}
		r["plan_id"] = "plan-" + strconv.Itoa(len(recs)%6)
		recs = append(recs, r)
		all = append(all, id)
	}
	for i := 0; i < 20; i++ {
		add(fmt.Sprintf("ui-js-%02d", i), "jira-mcp", "search", 10+i, "ok", 0.25)
	}
	for i := 0; i < 5; i++ {
		add(fmt.Sprintf("ui-cs-%02d", i), "confluence-mcp", "search", 300+10*i, "ok", 1.5)
	}
	add("ui-ci-0", "jira-mcp", "create_issue", 50, "ok", 0.5)
	add("ui-ci-1", "jira-mcp", "create_issue", 60, "system_error", 0.5)
	add("ui-ci-2", "jira-mcp", "create_issue", 1, "policy_blocked", 0)
	if code, _, pr, err := s.post(tok, jsonArray(t, recs...), nil); err != nil || code != 202 || pr.Accepted != len(recs) {
		t.Fatalf("post: %d %+v %v", code, pr, err)
	}
	waitSpans(t, s, q, all)
	proved := "ui-js-07"
	var bundle struct {
		LeafIndex uint64 `json:"leaf_index"`
	}
	if err := json.Unmarshal(s.waitProof(q, proved), &bundle); err != nil {
		t.Fatal(err)
	}
	y, wk := time.Now().UTC().ISOWeek()
	reportFile := filepath.Join(t.TempDir(), "report.html")
	if out, errOut, code := cli(t, "report", "--server", s.url, "--token", q, "--week", fmt.Sprintf("%04d-W%02d", y, wk), "--out", reportFile); code != 0 {
		t.Fatalf("proofline report: exit %d\n%s%s", code, out, errOut)
	}
	// A key of the log's name that is not the log's key, to pin.
	_, wrongKey, err := note.GenerateKey(rand.Reader, "e2e.proofline.test/log")
	if err != nil {
		t.Fatal(err)
	}
	raw := runInChromium(t, s, 3*time.Minute, "console.mjs", s.url, q, proved, reportFile, wrongKey)
	var saw consoleSaw
	if err := json.Unmarshal(raw, &saw); err != nil {
		t.Fatalf("console.mjs printed %q: %v", raw, err)
	}
	if saw.Fatal != "" {
		t.Fatalf("in Chromium: %s\nerrors: %q\nthe page: %s", saw.Fatal, saw.Errors, saw.HTML)
	}
	if len(saw.Errors) > 0 {
		t.Errorf("the pages logged errors: %q", saw.Errors)
	}
	if saw.BadToken == "" {
		t.Error("a wrong token was not refused on the sign-in form")
	}
	for name, p := range saw.Pages {
		if p.Alert != nil {
			t.Errorf("page %s shows an error: %s", name, *p.Alert)
		}
		for _, c := range p.Charts {
			if !c.Drawn {
				t.Errorf("page %s: chart %q has no size", name, c.Title)
			}
		}
	}
	near := func(cell string, want float64, digits int) bool {
		f := strings.Fields(strings.TrimSuffix(cell, " %"))
		if len(f) == 0 {
			return false
		}
		got, err := strconv.ParseFloat(f[0], 64)
		return err == nil && math.Abs(got-want) <= 0.5*math.Pow(10, -float64(digits))+1e-9
	}
	rng := url.Values{"from": {time.Now().UTC().Add(-24 * time.Hour).Format(time.RFC3339)}, "to": {time.Now().UTC().Format(time.RFC3339)}, "step": {"1h"}}
	apiGet := func(path string, params url.Values, v any) {
		t.Helper()
		code, raw := s.get(q, path+"?"+params.Encode())
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, raw)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range rng {
			v[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	type point struct {
		t string
		v float64
	}
	samePoints := func(what string, got []struct {
		T string  `json:"t"`
		V float64 `json:"v"`
	}, want []point) {
		t.Helper()
		sort.Slice(want, func(i, j int) bool { return want[i].t < want[j].t })
		if len(got) != len(want) {
			t.Errorf("%s: %d points drawn, the API has %d", what, len(got), len(want))
			return
		}
		for i := range want {
			gt, _ := time.Parse(time.RFC3339Nano, got[i].T)
			wt, _ := time.Parse(time.RFC3339Nano, want[i].t)
			if !gt.Equal(wt) || math.Abs(got[i].V-want[i].v) > 1e-9 {
				t.Errorf("%s point %d: drawn (%s, %v), the API has (%s, %v)", what, i, got[i].T, got[i].V, want[i].t, want[i].v)
			}
		}
	}

	// Latency: the table is the API's rows, the chart its p95 series.
	var lat struct {
		Rows []struct {
			Server, Key string
			Calls       uint64
			P50ms       float64 `json:"p50_ms"`
			P95ms       float64 `json:"p95_ms"`
			P99ms       float64 `json:"p99_ms"`
		} `json:"rows"`
		Series []struct {
			Server, Key string
			Points      []struct {
				Start time.Time `json:"start"`
				P95ms float64   `json:"p95_ms"`
			} `json:"points"`
		} `json:"series"`
	}
	apiGet("/v1/kpi/latency", with("by", "tool"), &lat)
	page := saw.Pages["latency"]
	rows := page.Tables["latency"]
	if len(lat.Rows) != 3 || len(rows) != len(lat.Rows) {
		t.Fatalf("latency: page rows %v, API rows %+v", rows, lat.Rows)
	}
	for i, r := range lat.Rows {
		g := rows[i]
		if g["tool"] != r.Server+"/"+r.Key || g["calls"] != strconv.FormatUint(r.Calls, 10) ||
			!near(g["p50_ms"], r.P50ms, 1) || !near(g["p95_ms"], r.P95ms, 1) || !near(g["p99_ms"], r.P99ms, 1) {
			t.Errorf("latency row %d: page %v, API %+v", i, g, r)
		}
	}
	if len(page.Charts) != 1 || len(page.Charts[0].Series) != len(lat.Series) {
		t.Fatalf("latency chart: %+v, API series %+v", page.Charts, lat.Series)
	}
	for i, sr := range lat.Series {
		var want []point
		for _, p := range sr.Points {
			want = append(want, point{p.Start.Format(time.RFC3339Nano), p.P95ms})
		}
		if page.Charts[0].Series[i].Name != sr.Server+"/"+sr.Key {
			t.Errorf("latency series %d is %q, the API's %s/%s", i, page.Charts[0].Series[i].Name, sr.Server, sr.Key)
		}
		samePoints("latency "+sr.Key, page.Charts[0].Series[i].Points, want)
	}

	// Error budget: burn rates per window, and the burn series.
	var eb struct {
		SLOs []struct {
			Group     string             `json:"group"`
			BurnRates map[string]float64 `json:"burn_rates"`
			Left      float64            `json:"budget_left"`
		} `json:"slos"`
		Series []struct {
			Group  string `json:"group"`
			Points []struct {
				Start    time.Time `json:"start"`
				BurnRate float64   `json:"burn_rate"`
			} `json:"points"`
		} `json:"series"`
	}
	apiGet("/v1/kpi/errorbudget", with(), &eb)
	page = saw.Pages["burn"]
	if len(eb.SLOs) != 1 || len(page.Tables["slos"]) != 1 || eb.SLOs[0].BurnRates["1h"] == 0 {
		t.Fatalf("burn: page %v, API %+v", page.Tables["slos"], eb.SLOs)
	}
	for _, w := range []string{"5m", "1h", "6h", "1d", "3d"} {
		if !near(page.Tables["slos"][0]["burn_"+w], eb.SLOs[0].BurnRates[w], 2) {
			t.Errorf("burn %s: page %q, API %v", w, page.Tables["slos"][0]["burn_"+w], eb.SLOs[0].BurnRates[w])
		}
	}
	if !near(page.Tables["slos"][0]["budget_left"], eb.SLOs[0].Left*100, 2) {
		t.Errorf("budget left: page %q, API %v", page.Tables["slos"][0]["budget_left"], eb.SLOs[0].Left)
	}
	if len(page.Charts) != 1 || len(page.Charts[0].Series) != 1 || len(page.Charts[0].Refs) != 1 || page.Charts[0].Refs[0].V != 1 {
		t.Fatalf("burn chart: %+v", page.Charts)
	}
	var want []point
	for _, p := range eb.Series[0].Points {
		want = append(want, point{p.Start.Format(time.RFC3339Nano), p.BurnRate})
	}
	samePoints("burn", page.Charts[0].Series[0].Points, want)

	// Cost: the figures, the cap line, and a running total that ends at
	// the month's total (the daily points add up).
	var cost struct {
		Total     float64 `json:"total"`
		Cap       float64 `json:"monthly_cap"`
		Projected float64 `json:"projected_month_end"`
		OverCap   bool    `json:"projected_over_cap"`
	}
	apiGet("/v1/kpi/cost", nil, &cost)
	page = saw.Pages["cost"]
	if want := 20*0.25 + 5*1.5 + 2*0.5; math.Abs(cost.Total-want) > 1e-9 {
		t.Fatalf("cost API total %v, the fixture's %v", cost.Total, want)
	}
	// The projection moves with the clock (a store minutes old projects
	// its rate since the first call), so the page's, read seconds before
	// the API's, is compared within 10%, and its over-the-cap mark exactly.
	projected, _ := strconv.ParseFloat(strings.TrimSpace(strings.SplitN(page.Figures["projected"], " ", 2)[0]), 64)
	if !near(page.Figures["total"], cost.Total, 2) || !near(page.Figures["cap"], 40, 2) ||
		math.Abs(projected-cost.Projected) > 0.1*cost.Projected || strings.Contains(page.Figures["projected"], "over the cap") != cost.OverCap {
		t.Errorf("cost figures: page %v, API %+v", page.Figures, cost)
	}
	if len(page.Charts) != 1 || len(page.Charts[0].Refs) != 1 || page.Charts[0].Refs[0].V != 40 || len(page.Charts[0].Series) != 1 {
		t.Fatalf("cost chart: %+v", page.Charts)
	}
	if pts := page.Charts[0].Series[0].Points; len(pts) == 0 || math.Abs(pts[len(pts)-1].V-cost.Total) > 1e-6 {
		t.Errorf("cost chart ends at %+v, the month's total is %v", pts, cost.Total)
	}

	// Failed plans: the weeks as the API counts them.
	var plans struct {
		Weeks []struct {
			Plans         uint64 `json:"plans"`
			PolicyBlocked uint64 `json:"policy_blocked"`
			SystemErrors  uint64 `json:"system_errors"`
		} `json:"weeks"`
		TopCauses []struct {
			ErrorCode string `json:"error_code"`
		} `json:"top_causes_this_month"`
	}
	apiGet("/v1/kpi/plans", nil, &plans)
	page = saw.Pages["plans"]
	if len(page.Tables["weeks"]) != len(plans.Weeks) || len(page.Tables["causes"]) != len(plans.TopCauses) || len(plans.TopCauses) == 0 {
		t.Fatalf("plans: page %v, API %+v", page.Tables, plans)
	}
	for i, w := range plans.Weeks {
		g := page.Tables["weeks"][i]
		if g["plans"] != fmt.Sprint(w.Plans) || g["policy_blocked"] != fmt.Sprint(w.PolicyBlocked) || g["system_errors"] != fmt.Sprint(w.SystemErrors) {
			t.Errorf("plans week %d: page %v, API %+v", i, g, w)
		}
	}
	if len(page.Charts) != 1 || len(page.Charts[0].Series) != 2 {
		t.Fatalf("plans chart: %+v", page.Charts)
	}

	// Onboarding: one row per (server, tool).
	var ob struct {
		Tools []struct {
			Server, Tool string
			Calls        uint64
		} `json:"tools"`
	}
	apiGet("/v1/kpi/onboarding", nil, &ob)
	page = saw.Pages["onboarding"]
	if len(ob.Tools) != 3 || len(page.Tables["onboarding"]) != 3 {
		t.Fatalf("onboarding: page %v, API %+v", page.Tables["onboarding"], ob.Tools)
	}
	for i, o := range ob.Tools {
		g := page.Tables["onboarding"][i]
		if g["server"] != o.Server || g["tool"] != o.Tool || g["calls"] != fmt.Sprint(o.Calls) {
			t.Errorf("onboarding row %d: page %v, API %+v", i, g, o)
		}
	}
	if len(saw.Pages["records"].Tables["records"]) != len(all) {
		t.Errorf("records page lists %d records, %d were posted", len(saw.Pages["records"].Tables["records"]), len(all))
	}

	// Paging: the second page follows the first, without overlap, in the
	// API's order.
	var pages struct {
		Spans []struct {
			RecordID string `json:"record_id"`
		} `json:"spans"`
	}
	apiGet("/v1/spans", url.Values{"limit": {"20"}}, &pages)
	var want20 []string
	for _, sp := range pages.Spans {
		want20 = append(want20, sp.RecordID)
	}
	if got := append(append([]string{}, saw.Paging.First...), saw.Paging.Second...); fmt.Sprint(got) != fmt.Sprint(want20) {
		t.Errorf("records paged by ten: %v, the API's first twenty %v", got, want20)
	}

	// The record page proves the record in the browser, and nothing else.
	rec := saw.Record
	if r := rec["served"]; r.Verdict != "ok" || len(r.Steps) != 4 || !strings.Contains(r.Text, fmt.Sprintf("leaf %d ", bundle.LeafIndex)) {
		t.Errorf("the served bundle: %+v (leaf %d)", r, bundle.LeafIndex)
	}
	for kind, step := range map[string]string{
		"record":         "inclusion proof (RFC 6962)",
		"proof":          "inclusion proof (RFC 6962)",
		"signature":      "checkpoint signature (Ed25519)",
		"pinnedWrongKey": "checkpoint signature (Ed25519)",
	} {
		r := rec[kind]
		failed := ""
		for _, s := range r.Steps {
			if !s.OK {
				failed = s.Name
			}
		}
		if r.Verdict != "failed" || failed != step || !strings.Contains(r.Text, step) {
			t.Errorf("tampered (%s): %+v, want failed at %q", kind, r, step)
		}
	}
	if rec["unpinned"].Verdict != "ok" {
		t.Errorf("after unpinning the wrong key: %+v", rec["unpinned"])
	}

	// The weekly report, rendered: its charts have a size.
	if len(saw.Report.SVGs) < 3 || saw.Report.Tables < 3 {
		t.Errorf("the report rendered %+v", saw.Report)
	}
	for i, s := range saw.Report.SVGs {
		if s.W < 50 || s.H < 50 {
			t.Errorf("report chart %d rendered %vx%v", i, s.W, s.H)
		}
	}
}

// TestConsoleOfAnEmptyServer: a new user's first look — a server with no
// records and no SLO file. Every page loads without a script error; the
// charts and tables say there is nothing yet, and the error budget page
// says how to configure SLOs.
func TestConsoleOfAnEmptyServer(t *testing.T) {
	s := startServer(t, t.TempDir())
	raw := runInChromium(t, s, 2*time.Minute, "console_empty.mjs", s.url, s.token("sre", "query", "1h"))
	var saw struct {
		Errors []string `json:"errors"`
		Fatal  string   `json:"fatal"`
		Pages  map[string]struct {
			Alert  *string  `json:"alert"`
			Empty  []string `json:"empty"`
			Charts int      `json:"charts"`
		} `json:"pages"`
	}
	if err := json.Unmarshal(raw, &saw); err != nil {
		t.Fatalf("console_empty.mjs printed %q: %v", raw, err)
	}
	if saw.Fatal != "" || len(saw.Errors) > 0 {
		t.Fatalf("in Chromium: %s %q", saw.Fatal, saw.Errors)
	}
	for name, p := range saw.Pages {
		switch {
		case name == "burn":
			if p.Alert == nil || !strings.Contains(*p.Alert, "--slo") {
				t.Errorf("the error budget page without SLOs: %+v", p)
			}
		case p.Alert != nil:
			t.Errorf("page %s shows an error: %s", name, *p.Alert)
		case len(p.Empty) == 0:
			t.Errorf("page %s does not say it is empty: %+v", name, p)
		}
	}
	if len(saw.Pages) != 6 {
		t.Fatalf("pages seen: %v", saw.Pages)
	}
}
