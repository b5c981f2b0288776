// Package report renders proofline's weekly SRE report: one
// self-contained HTML file — inline SVG charts and tables, no script, no
// stylesheet or font fetched from anywhere — that can be mailed,
// archived and opened offline years later. The data comes from the KPI
// API (the CLI's `proofline report` fills Data); this package only lays
// it out.
package report

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/proofline/proofline/query/spanstore"
)

// Week is an ISO 8601 week: Monday 00:00 UTC to the next Monday.
type Week struct {
	Label    string
	From, To time.Time
}

var weekRE = regexp.MustCompile(`^(\d{4})-W(\d{2})$`)

// ParseWeek reads an ISO week such as 2026-W48.
func ParseWeek(s string) (Week, error) {
	m := weekRE.FindStringSubmatch(s)
	if m == nil {
		return Week{}, fmt.Errorf("week %q: want YYYY-Www, e.g. 2026-W48", s)
	}
	year, _ := strconv.Atoi(m[1])
	n, _ := strconv.Atoi(m[2])
	// 4 January is always in week 1.
	jan4 := time.Date(year, 1, 4, 0, 0, 0, 0, time.UTC)
	monday1 := jan4.AddDate(0, 0, -((int(jan4.Weekday()) + 6) % 7))
	from := monday1.AddDate(0, 0, 7*(n-1))
	if y, w := from.ISOWeek(); n < 1 || y != year || w != n {
		return Week{}, fmt.Errorf("week %q: %d has no week %d", s, year, n)
	}
	return Week{Label: s, From: from, To: from.AddDate(0, 0, 7)}, nil
}

// WeekOf is the ISO week holding t.
func WeekOf(t time.Time) Week {
	y, n := t.UTC().ISOWeek()
	w, _ := ParseWeek(fmt.Sprintf("%04d-W%02d", y, n))
	return w
}

// Evidence is the log's state when the report was made.
type Evidence struct {
	Origin      string
	TreeSize    uint64
	Checkpoint  string
	DeadLetters int
	// DeadLettersMore is set when there were more dead letters than were
	// counted.
	DeadLettersMore bool
}

// Data is what a weekly report shows. Series are per day of the week.
type Data struct {
	Week      Week
	Generated time.Time
	Server    string
	// Until is where the data ends when the week was not over (a
	// partial week); zero for a whole week.
	Until time.Time

	Latency     []spanstore.LatencyRow
	LatencyDays []spanstore.LatencySeries
	// Budgets are the SLOs as they stood at the week's end (Until for a
	// partial week); nil without SLOs.
	Budgets    []spanstore.BudgetRow
	Burn       []spanstore.BurnSeries
	Cost       *spanstore.CostReport
	CostDays   []spanstore.CostPoint
	Plans      *spanstore.PlanReport
	PlanDays   []spanstore.PlanPoint
	Onboarding []spanstore.OnboardingRow
	Evidence   Evidence
}

// Render writes the report.
func Render(w io.Writer, d Data) error {
	if d.Week.From.IsZero() {
		return errors.New("report: no week")
	}
	var buf bytes.Buffer
	view{Data: d}.page(&buf)
	_, err := w.Write(buf.Bytes())
	return err
}

// view adds to Data what the template computes.
type view struct {
	Data
}

// Days are the week's seven days.
func (v view) Days() []time.Time {
	out := make([]time.Time, 7)
	for i := range out {
		out[i] = v.Week.From.AddDate(0, 0, i)
	}
	return out
}

// LatencyChart is p95 latency per tool per day.
func (v view) LatencyChart() string {
	var series []line
	for _, s := range v.LatencyDays {
		l := line{name: s.Key}
		if s.Server != "" {
			l.name = s.Server + "/" + s.Key
		}
		for _, p := range s.Points {
			l.points = append(l.points, point{p.Start, p.P95ms})
		}
		series = append(series, l)
	}
	return chart("p95 latency per tool per day", "ms", v.Days(), series, 0)
}

// BurnChart is each SLO's burn rate per day, with 1 (the budget spent
// exactly over the period) marked.
func (v view) BurnChart() string {
	var series []line
	for _, s := range v.Burn {
		l := line{name: s.Group}
		for _, p := range s.Points {
			l.points = append(l.points, point{p.Start, p.BurnRate})
		}
		series = append(series, l)
	}
	return chart("error-budget burn rate per SLO per day (1 = budget spent exactly over the period)", "×", v.Days(), series, 1)
}

// CostChart is the spend per day, with the cap's daily share marked.
func (v view) CostChart() string {
	l := line{name: "spend"}
	for _, p := range v.CostDays {
		l.points = append(l.points, point{p.Start, p.Amount})
	}
	mark := 0.0
	cur := ""
	if v.Cost != nil {
		cur = v.Cost.Currency
		if v.Cost.MonthlyCap > 0 {
			m0 := v.Cost.MonthStart
			days := m0.AddDate(0, 1, 0).Sub(m0).Hours() / 24
			mark = v.Cost.MonthlyCap / days
		}
	}
	return chart("spend per day (the line: the monthly cap's daily share)", cur, v.Days(), []line{l}, mark)
}

// PlanChart is the failed plan rate per day.
func (v view) PlanChart() string {
	l := line{name: "failed plans"}
	for _, p := range v.PlanDays {
		l.points = append(l.points, point{p.Start, p.FailedRate * 100})
	}
	return chart("failed plans per day", "%", v.Days(), []line{l}, 0)
}

// Week's plans, from the plans report's week rows.
func (v view) PlanWeek() *spanstore.PlanWeek {
	if v.Plans == nil {
		return nil
	}
	for i := range v.Plans.Weeks {
		if v.Plans.Weeks[i].Week.Equal(v.Week.From) {
			return &v.Plans.Weeks[i]
		}
	}
	return nil
}

// Attainment is the share of good calls this month that an SLO's budget
// row implies, in percent.
func attainment(b spanstore.BudgetRow) string {
	if b.CallsMonth == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f%%", 100*(1-float64(b.BadMonth)/float64(b.CallsMonth)))
}

type point struct {
	t time.Time
	v float64
}

type line struct {
	name   string
	points []point
}

// palette is distinguishable for the usual colour vision deficiencies
// (Okabe–Ito).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

// chart draws a line chart of days as inline SVG. Hand-written: the
// report must hold its charts itself (no script, nothing fetched), and
// a chart of seven days needs a few lines of SVG, not a plotting
// library. mark, when positive, draws a dashed reference line.
func chart(title, unit string, days []time.Time, series []line, mark float64) string {
	const w, h, left, right, top, bottom = 640.0, 220.0, 56.0, 150.0, 24.0, 28.0
	sort.SliceStable(series, func(i, j int) bool { return series[i].name < series[j].name })
	hi := mark
	for _, s := range series {
		for _, p := range s.points {
			hi = math.Max(hi, p.v)
		}
	}
	if hi <= 0 {
		hi = 1
	}
	hi *= 1.1
	x := func(t time.Time) float64 {
		i := t.Sub(days[0]).Hours() / 24
		return left + (w-left-right)*(i+0.5)/float64(len(days))
	}
	y := func(v float64) float64 { return top + (h-top-bottom)*(1-v/hi) }
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" role="img" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f"><title>%s</title>`, w, h, w, h, esc(title))
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`, left, h-bottom, w-right, h-bottom)
	for _, v := range []float64{0, hi / 2, hi} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">%s %s</text>`, left-4, y(v)+3, esc(formatNum(v)), esc(unit))
	}
	for _, d := range days {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%s</text>`, x(d), h-bottom+14, d.Format("Mon 02"))
	}
	if mark > 0 {
		fmt.Fprintf(&b, `<line class="mark" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#D55E00" stroke-dasharray="4 3"/>`, left, y(mark), w-right, y(mark))
	}
	for i, s := range series {
		c := palette[i%len(palette)]
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.t), y(p.v)))
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
		}
		for _, p := range s.points {
			fmt.Fprintf(&b, `<circle class="point" cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %s: %s %s</title></circle>`,
				x(p.t), y(p.v), c, esc(s.name), p.t.Format("Mon 02 Jan"), esc(formatNum(p.v)), esc(unit))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" fill="%s">%s</text>`, w-right+8, top+14*float64(i+1), c, esc(s.name))
	}
	if len(series) == 0 || allEmpty(series) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">no data this week</text>`, (left+w-right)/2, h/2)
	}
	b.WriteString(`</svg>`)
	return b.String() // every text above is escaped
}

func allEmpty(series []line) bool {
	for _, s := range series {
		if len(s.points) > 0 {
			return false
		}
	}
	return true
}

func formatNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

// page writes the report. Plain Go rather than html/template: executing a
// template makes the linker keep every exported method of every type in
// the binary (it calls methods by name), which grew the server's binary,
// linked with this package, by 13 MB and its resident memory by 8 MiB.
// Every text from the data goes through esc.
func (v view) page(b *bytes.Buffer) {
	esc := html.EscapeString
	f := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	pct := func(x float64) string { return formatNum(100*x) + "%" }
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	date := func(t time.Time) string { return t.UTC().Format("2006-01-02") }
	bad := func(on bool) string {
		if on {
			return ` class="bad"`
		}
		return ""
	}
	f(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>proofline weekly report %s</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:900px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}th,td{padding:.25em .7em;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}.meta{color:#666;font-size:.9em}.bad{color:#b00}
</style></head><body>
<h1>proofline weekly report — %s</h1>
`, esc(v.Week.Label), esc(v.Week.Label))
	f(`<p class="meta">%s to %s (UTC, the end excluded) · made %s`, date(v.Week.From), date(v.Week.To), stamp(v.Generated))
	if !v.Until.IsZero() {
		f(` · <strong id="partial">partial week: data up to %s</strong>`, stamp(v.Until))
	}
	if v.Server != "" {
		f(` from %s`, esc(v.Server))
	}
	f("</p>\n\n<h2 id=\"slo\">SLO attainment and error budget</h2>\n")
	if len(v.Budgets) > 0 {
		f(`<table id="slo-table"><tr><th>group</th><th>target</th><th>attainment (month)</th><th>budget left (month)</th><th>budget left (28 d)</th><th>burn 1 h</th><th>burn 6 h</th><th>alerts firing</th></tr>` + "\n")
		for _, r := range v.Budgets {
			f(`<tr><td>%s</td><td>%s</td><td>%s</td><td%s>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>`+"\n",
				esc(r.Group), pct(r.Target), attainment(r), bad(r.BudgetLeft < 0), pct(r.BudgetLeft), pct(r.BudgetLeft28d),
				formatNum(r.BurnRate1h), formatNum(r.BurnRate6h), esc(strings.Join(r.Firing, " ")))
		}
		f("</table>\n%s", v.BurnChart())
	} else {
		f("<p>No SLOs are configured (serve --slo FILE).</p>")
	}

	f("\n\n<h2 id=\"latency\">Latency per tool</h2>\n")
	if len(v.Latency) == 0 {
		f(`<p id="latency-none">No tool calls ran in this week.</p>` + "\n")
	}
	f(`<table id="latency-table"><tr><th>server / tool</th><th>calls</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>` + "\n")
	for _, r := range v.Latency {
		name := r.Key
		if r.Server != "" {
			name = r.Server + " / " + r.Key
		}
		f("<tr><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", esc(name), r.Calls, formatNum(r.P50ms), formatNum(r.P95ms), formatNum(r.P99ms))
	}
	f("</table>\n%s", v.LatencyChart())

	f("\n\n<h2 id=\"cost\">Cost against the cap</h2>\n")
	if c := v.Cost; c != nil {
		capS := "—"
		if c.MonthlyCap != 0 {
			capS = formatNum(c.MonthlyCap)
		}
		f(`<table id="cost-table"><tr><th>month from</th><th>spent (%s)</th><th>monthly cap</th><th>projected month end</th><th>without a currency</th></tr>`+"\n",
			esc(c.Currency))
		f("<tr><td>%s</td><td>%s</td><td>%s</td><td%s>%s</td><td>%d calls, %s</td></tr></table>\n",
			date(c.MonthStart), formatNum(c.Total), capS, bad(c.OverCap), formatNum(c.ProjectedTotal), c.WithoutCurrency.Calls, formatNum(c.WithoutCurrency.Amount))
		if len(c.Anomalies) > 0 {
			f(`<table id="cost-anomalies"><tr><th>anomaly: tool</th><th>reason</th><th>last hour spend</th></tr>`)
			for _, a := range c.Anomalies {
				tool := a.Tool
				if a.Server != "" {
					tool = a.Server + "/" + a.Tool
				}
				f("<tr><td>%s</td><td>%s</td><td>%s</td></tr>", esc(tool), esc(a.Reason), formatNum(a.RecentSpend))
			}
			f("</table>\n")
		}
	}
	f("%s", v.CostChart())

	f("\n\n<h2 id=\"plans\">Failed plans</h2>\n")
	if w := v.PlanWeek(); w != nil {
		f(`<table id="plans-table"><tr><th>plans</th><th>blocked by policy</th><th>failed otherwise</th><th>failed rate</th><th>mean time to detect</th><th>mean time to recover</th></tr>` + "\n")
		f("<tr><td>%d</td><td>%d</td><td>%d</td><td>%s</td><td>%s s</td><td>%s s (%d recovered)</td></tr></table>\n",
			w.Plans, w.PolicyBlocked, w.SystemErrors, pct(w.FailedRate), formatNum(w.MeanTimeToDetectMs/1000), formatNum(w.MeanTimeToRecoverMs/1000), w.Recovered)
	} else {
		f("<p>No plans this week.</p>\n")
	}
	if v.Plans != nil && len(v.Plans.TopCauses) > 0 {
		f(`<table id="causes-table"><tr><th>top causes (month)</th><th>error code</th><th>calls</th></tr>`)
		for _, c := range v.Plans.TopCauses {
			f("<tr><td>%s</td><td>%s</td><td>%d</td></tr>", esc(c.Status), esc(c.ErrorCode), c.Calls)
		}
		f("</table>\n")
	}
	f("%s", v.PlanChart())

	f("\n\n<h2 id=\"onboarding\">Onboarding</h2>\n")
	f(`<table id="onboarding-table"><tr><th>server / tool</th><th>registered</th><th>first call</th><th>lead time</th><th>calls</th></tr>` + "\n")
	for _, r := range v.Onboarding {
		name := r.Tool
		if r.Server != "" {
			name = r.Server + " / " + r.Tool
		}
		reg, lead := "—", "no success yet"
		if r.Registered != nil {
			reg = stamp(*r.Registered)
		}
		if r.LeadTimeHours != nil {
			lead = formatNum(*r.LeadTimeHours) + " h"
		}
		f("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td></tr>\n", esc(name), reg, stamp(r.FirstSeen), lead, r.Calls)
	}
	f("</table>\n")

	e := v.Evidence
	more := ""
	if e.DeadLettersMore {
		more = "+"
	}
	f("\n<h2 id=\"evidence\">Evidence</h2>\n")
	f(`<table id="evidence-table"><tr><th>log</th><th>tree size</th><th>dead letters</th></tr>`+"\n<tr><td>%s</td><td>%d</td><td>%d%s</td></tr></table>\n", esc(e.Origin), e.TreeSize, e.DeadLetters, more)
	f("<p>Latest signed checkpoint (verify with <code>proofline verify</code>):</p><pre id=\"checkpoint\">%s</pre>\n</body></html>\n", esc(e.Checkpoint))
}
