package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/proofline/proofline/internal/httpx"
	"github.com/proofline/proofline/query/spanstore"
	"github.com/proofline/proofline/schemas"
)

// parseWindow reads a window as a Go duration ("36h") or days ("7d").
// name is the parameter's, for the error.
func parseWindow(name, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 3660 {
			return 0, fmt.Errorf("%s %q: want a positive number of days, e.g. 7d", name, s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	w, err := time.ParseDuration(s)
	if err != nil || w <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive Go duration (36h) or days (7d)", name, s)
	}
	return w, nil
}

// parseTime reads a request's time parameter: RFC 3339, from 1970 to
// 2100. The engine's DateTime, which the rollups use, holds 1970 to 2106
// and its DateTime64 ends in 2262, and no call is older than 1970:
// outside, a query would fail (a 500) or the zero time read as unset.
func parseTime(name, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, fmt.Errorf("%s must be an RFC 3339 time", name)
	}
	if t.Before(time.Unix(0, 0)) || !t.Before(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)) {
		return t, fmt.Errorf("%s must be a time from 1970 to 2100", name)
	}
	return t.UTC(), nil
}

// bounds parses a request's from and to, each the zero time when not
// given. When both are bad the error names both, from first: one round
// trip fixes the request. A from given must be before a to given.
func bounds(fromS, toS string) (from, to time.Time, err error) {
	var errFrom, errTo error
	if fromS != "" {
		from, errFrom = parseTime("from", fromS)
	}
	if toS != "" {
		to, errTo = parseTime("to", toS)
	}
	switch {
	case errFrom != nil && errTo != nil:
		return from, to, fmt.Errorf("%w; %w", errFrom, errTo)
	case errFrom != nil:
		return from, to, errFrom
	case errTo != nil:
		return from, to, errTo
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, errors.New("from must be before to")
	}
	return from, to, nil
}

// timeRange is [from, to) of a KPI request: RFC 3339 from and to (see
// bounds), either defaulting from the other and the window (to: now).
func timeRange(fromS, toS string, window time.Duration) (from, to time.Time, err error) {
	if from, to, err = bounds(fromS, toS); err != nil {
		return from, to, err
	}
	if to.IsZero() { // parseTime takes no time before 1970
		to = time.Now().UTC()
	}
	if from.IsZero() {
		from = to.Add(-window)
	}
	if !from.Before(to) {
		return from, to, errors.New("from must be before to")
	}
	return from.UTC(), to.UTC(), nil
}

// seriesOf reads a request's step and from/to (to defaulting to at, from
// to the window before to) into an aligned series; nil without a step.
func seriesOf(q url.Values, at time.Time, window time.Duration) (*spanstore.Series, error) {
	v := q.Get("step")
	if v == "" {
		return nil, nil
	}
	step, err := parseWindow("step", v, 0)
	if err != nil {
		return nil, err
	}
	toS := q.Get("to")
	if toS == "" {
		toS = at.Format(time.RFC3339Nano)
	}
	from, to, err := timeRange(q.Get("from"), toS, window)
	if err != nil {
		return nil, err
	}
	s, err := spanstore.AlignSeries(from, to, step)
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// atSeriesOf is seriesOf for the KPIs whose totals are as of at (cost,
// plans, error budget), where from and to only bound the series: without
// step they are refused, since ignored they would look like a total over
// the range asked for.
func atSeriesOf(q url.Values, at time.Time, window time.Duration) (*spanstore.Series, error) {
	if q.Get("step") == "" && (q.Get("from") != "" || q.Get("to") != "") {
		return nil, errors.New("from and to bound the series: add step (or use at and window for the totals)")
	}
	return seriesOf(q, at, window)
}

// atOf is a request's at (RFC 3339), else now.
func atOf(q url.Values) (time.Time, error) {
	v := q.Get("at")
	if v == "" {
		return time.Now().UTC(), nil
	}
	return parseTime("at", v)
}

// kpiLatency serves p50/p95/p99 latency per tool or tool group, over a
// window ending now or from/to, with a series per step when step is
// given.
func (d Deps) kpiLatency(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	by := q.Get("by")
	if by == "" {
		by = "tool"
	}
	if by != "tool" && by != "group" {
		httpx.WriteError(w, http.StatusBadRequest, "by must be tool or group")
		return
	}
	window, err := parseWindow("window", q.Get("window"), 7*24*time.Hour)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	exact := false
	if v := q.Get("exact"); v != "" {
		if exact, err = strconv.ParseBool(v); err != nil {
			httpx.WriteError(w, http.StatusBadRequest, "exact must be true or false")
			return
		}
	}
	from, to, err := timeRange(q.Get("from"), q.Get("to"), window)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	// With a step, the range is aligned to whole steps, and the totals
	// are of that range too: they then sum the series' points.
	series, err := seriesOf(q, to, window)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if series != nil {
		from, to = series.From, series.To
	}
	rows, err := d.Spans.Latency(r.Context(), spanstore.LatencyQuery{By: by, From: from, To: to, Exact: exact})
	if err != nil {
		d.Logger.ErrorContext(r.Context(), "latency kpi", "err", err)
		httpx.WriteError(w, http.StatusInternalServerError, "latency query failed")
		return
	}
	if rows == nil {
		rows = []spanstore.LatencyRow{} // [] rather than null for clients
	}
	res := map[string]any{
		"by": by, "from": from.Format(time.RFC3339Nano), "to": to.Format(time.RFC3339Nano),
		"exact": exact, "rows": rows,
	}
	if series != nil {
		points, err := d.Spans.LatencySeries(r.Context(), by, *series, exact)
		if err != nil {
			d.Logger.ErrorContext(r.Context(), "latency series", "err", err)
			httpx.WriteError(w, http.StatusInternalServerError, "latency series query failed")
			return
		}
		res["step_seconds"], res["series"] = series.StepSeconds, points
	}
	if !exact {
		// Quantiles from the rollup: say how far off they may be.
		res["relative_accuracy"] = spanstore.LatencyAccuracy
	}
	httpx.WriteJSON(w, http.StatusOK, res)
}

// spans lists spans with cursor paging.
func (d Deps) spans(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := spanstore.SpanFilter{Tool: q.Get("tool"), TraceID: q.Get("trace_id"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	f.Approver, f.Server = q.Get("approver"), q.Get("server")
	if v := q.Get("elevated"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			httpx.WriteError(w, http.StatusBadRequest, "elevated must be true or false")
			return
		}
		f.Elevated = &b
	}
	var err error
	if f.From, f.To, err = bounds(q.Get("from"), q.Get("to")); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if f.Status != "" && !schemas.IsStatus(f.Status) {
		httpx.WriteError(w, http.StatusBadRequest, "status must be one of "+strings.Join(schemas.Statuses(), ", "))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > spanstore.MaxPage {
			httpx.WriteError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1 to %d", spanstore.MaxPage))
			return
		}
		f.Limit = n
	}
	page, err := d.Spans.Spans(r.Context(), f)
	switch {
	case errors.Is(err, spanstore.ErrBadCursor):
		httpx.WriteError(w, http.StatusBadRequest, "cursor is not one this API returned")
	case err != nil:
		d.Logger.ErrorContext(r.Context(), "spans", "err", err)
		httpx.WriteError(w, http.StatusInternalServerError, "spans query failed")
	default:
		httpx.WriteJSON(w, http.StatusOK, page)
	}
}

// catalog lists the tools servers offered, with their versions.
func (d Deps) catalog(w http.ResponseWriter, r *http.Request) {
	tools, err := d.Spans.Catalog(r.Context())
	d.answer(w, r, "catalog", map[string]any{"tools": tools}, err)
}

func (d Deps) kpiOnboarding(w http.ResponseWriter, r *http.Request) {
	rows, err := d.Spans.Onboarding(r.Context())
	d.answer(w, r, "onboarding kpi", map[string]any{"tools": rows}, err)
}

// kpiCost serves the month's spend against the cap, as of at (default
// now), with a series per step of from..to (default: the month of at)
// when step is given.
func (d Deps) kpiCost(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	at, err := atOf(q)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	monthStart := time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC)
	s, err := atSeriesOf(q, at, max(at.Sub(monthStart), time.Minute))
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	rep, err := d.Spans.Cost(r.Context(), d.Cost, at)
	if err != nil || s == nil {
		d.answer(w, r, "cost kpi", rep, err)
		return
	}
	points, err := d.Spans.CostSeries(r.Context(), d.Cost.Currency, *s)
	d.answer(w, r, "cost kpi", struct {
		*spanstore.CostReport
		From        time.Time             `json:"from"`
		To          time.Time             `json:"to"`
		StepSeconds int64                 `json:"step_seconds"`
		Series      []spanstore.CostPoint `json:"series"`
	}{rep, s.From, s.To, s.StepSeconds, points}, err)
}

// kpiPlans serves failed plans per week over the window (or from..at),
// with a series per step when step is given.
func (d Deps) kpiPlans(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	window, err := parseWindow("window", q.Get("window"), 28*24*time.Hour)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	at, err := atOf(q)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	s, err := atSeriesOf(q, at, window)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	rep, err := d.Spans.Plans(r.Context(), at.Add(-window), at)
	if err != nil || s == nil {
		d.answer(w, r, "plans kpi", rep, err)
		return
	}
	points, err := d.Spans.PlanSeries(r.Context(), *s)
	d.answer(w, r, "plans kpi", struct {
		*spanstore.PlanReport
		StepSeconds int64                 `json:"step_seconds"`
		SeriesFrom  time.Time             `json:"series_from"`
		SeriesTo    time.Time             `json:"series_to"`
		Series      []spanstore.PlanPoint `json:"series"`
	}{rep, s.StepSeconds, s.From, s.To, points}, err)
}

// answer writes v, or logs err and answers 500 without internals.
func (d Deps) answer(w http.ResponseWriter, r *http.Request, what string, v any, err error) {
	if err != nil {
		d.Logger.ErrorContext(r.Context(), what, "err", err)
		httpx.WriteError(w, http.StatusInternalServerError, what+" query failed")
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

func (d Deps) kpiErrorBudget(w http.ResponseWriter, r *http.Request) {
	if len(d.SLOs) == 0 {
		httpx.WriteError(w, http.StatusNotFound, spanstore.ErrNoSLOs.Error())
		return
	}
	q := r.URL.Query()
	// at looks at the budget as it stood then (a past incident); with a
	// step, from..to (default: the 7 days before at) is also a series.
	at, err := atOf(q)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	s, err := atSeriesOf(q, at, 7*24*time.Hour)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	res := map[string]any{"at": at.Format(time.RFC3339Nano)}
	if s != nil {
		series, err := d.Spans.BurnSeries(r.Context(), d.SLOs, *s)
		if err != nil {
			d.Logger.ErrorContext(r.Context(), "burn series", "err", err)
			httpx.WriteError(w, http.StatusInternalServerError, "burn series query failed")
			return
		}
		res["from"], res["to"], res["step_seconds"], res["series"] = s.From.Format(time.RFC3339), s.To.Format(time.RFC3339), s.StepSeconds, series
	}
	rows, err := d.Spans.ErrorBudget(r.Context(), d.SLOs, at)
	res["slos"] = rows
	d.answer(w, r, "error budget kpi", res, err)
}
