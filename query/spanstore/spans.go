package spanstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// SpanFilter selects spans; zero fields do not filter.
type SpanFilter struct {
	Tool string
	// Server narrows Tool to one server's (a tool is its server and name).
	Server  string
	TraceID string
	Status  string
	// Elevated keeps only calls made under an elevation (true) or only
	// calls without one (false).
	Elevated *bool
	// Approver keeps the calls whose elevation this approver approved.
	Approver string
	From     time.Time
	To       time.Time
	Limit    int
	// Cursor continues a previous page (SpanPage.Next).
	Cursor string
}

// SpanRow is one span as the API lists it.
type SpanRow struct {
	RecordID       string    `json:"record_id"`
	TSStart        time.Time `json:"ts_start"`
	TSEnd          time.Time `json:"ts_end"`
	LatencyMs      float64   `json:"latency_ms"`
	ActorID        string    `json:"actor_id"`
	Tool           string    `json:"tool"`
	ToolServer     string    `json:"tool_server"`
	ToolGroup      string    `json:"tool_group"`
	TraceID        string    `json:"trace_id"`
	SpanID         string    `json:"span_id"`
	ParentSpanID   string    `json:"parent_span_id"`
	Status         string    `json:"status"`
	ErrorCode      string    `json:"error_code"`
	ErrorMessage   string    `json:"error_message"`
	PolicyDecision string    `json:"policy_decision"`
	CostAmount     float64   `json:"cost_amount"`
	// CostCurrency is the cost's ISO 4217 code; empty when the record
	// gave none (such amounts are kept apart from every currency's).
	CostCurrency string `json:"cost_currency"`
	WorkflowID   string `json:"workflow_id"`
	PlanID       string `json:"plan_id"`
	// ElevationScopes and ElevationApprover are the call's elevation
	// (empty without one).
	ElevationScopes   []string `json:"elevation_scopes"`
	ElevationApprover string   `json:"elevation_approver"`
	LogOrigin         string   `json:"log_origin"`
	LeafIndex         uint64   `json:"leaf_index"`
}

// SpanPage is one page of spans, newest first.
type SpanPage struct {
	Spans []SpanRow `json:"spans"`
	// Next is the cursor of the following page, empty on the last one.
	Next string `json:"next,omitempty"`
}

type cursor struct {
	TS time.Time `json:"t"`
	ID string    `json:"i"`
}

// ErrBadCursor is returned for a cursor this API did not make.
var ErrBadCursor = errors.New("bad cursor")

// MaxPage bounds one page.
const MaxPage = 1000

// Spans lists spans matching f, newest first. Every filter is a bound
// parameter; only fixed SQL fragments are chosen by which filters are set.
func (s *Store) Spans(ctx context.Context, f SpanFilter) (*SpanPage, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, MaxPage)
	where := []string{"1"}
	params := clickhouse.Parameters{"limit": fmt.Sprint(f.Limit + 1)}
	add := func(cond, name, value string) {
		where = append(where, cond)
		params[name] = value
	}
	var cursorTS time.Time
	if f.Tool != "" {
		add("tool_name = {tool:String}", "tool", f.Tool)
	}
	if f.Server != "" {
		add("tool_server = {server:String}", "server", f.Server)
	}
	if f.TraceID != "" {
		add("trace_id = {trace_id:String}", "trace_id", f.TraceID)
	}
	if f.Status != "" {
		add("outcome_status = {status:String}", "status", f.Status)
	}
	if f.Elevated != nil {
		if *f.Elevated {
			where = append(where, "notEmpty(elevation_scopes)")
		} else {
			where = append(where, "empty(elevation_scopes)")
		}
	}
	if f.Approver != "" {
		add("elevation_approver = {approver:String}", "approver", f.Approver)
	}
	if !f.From.IsZero() {
		add("ts_start >= {from:DateTime64(9, 'UTC')}", "from", f.From.UTC().Format(tsFmt))
	}
	if !f.To.IsZero() {
		add("ts_start < {to:DateTime64(9, 'UTC')}", "to", f.To.UTC().Format(tsFmt))
	}
	if f.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		var c cursor
		if err != nil || json.Unmarshal(raw, &c) != nil || c.ID == "" {
			return nil, ErrBadCursor
		}
		where = append(where, "(ts_start, record_id) < ({cts:DateTime64(9, 'UTC')}, {cid:String})")
		params["cts"], params["cid"] = c.TS.UTC().Format(tsFmt), c.ID
		cursorTS = c.TS.UTC()
	}
	// The newest page is in the newest partitions: ask for the last hour
	// first, then the last day and week, and only then for everything, so
	// a first page reads the day it is in rather than every span (at 10M
	// spans, 430 ms against tens). A probe that fills the page is the
	// answer: every span it left out is older than all it returned.
	upper := time.Now().UTC()
	if !f.To.IsZero() {
		upper = f.To.UTC()
	}
	if f.Cursor != "" {
		upper = cursorTS
	}
	var page *SpanPage
	var read time.Time // the lowest bound a probe has read from; zero: none yet
	for _, probe := range spanProbes {
		lower := time.Time{}
		if probe > 0 {
			lower = upper.Add(-probe)
			if !f.From.IsZero() && !f.From.Before(lower) {
				continue // the range asked for is narrower: no need
			}
			if !read.IsZero() && !lower.Before(read) {
				continue // read already
			}
		}
		// The hour before now is whole in the recent spans (spans_recent,
		// migration 0030), which a newest-first page reads at its end.
		table := "{{spans}}"
		if probe == spanProbes[0] && f.To.IsZero() && f.Cursor == "" && !lower.IsZero() {
			table = spansHolding(lower, upper)
		}
		var err error
		page, err = s.spansPage(ctx, table, where, params, lower)
		if err != nil {
			return nil, err
		}
		if len(page.Spans) > f.Limit && table == "{{recent}}" {
			// spans_recent holds the 2 hours before now whole, but not
			// a span that starts after now (a producer's clock ahead of
			// ours) unless it came within the hour before: with one in
			// spans, a full page from spans_recent could leave it out
			// and the cursor would move below it for good, so the page
			// comes from spans. (A page that is not full goes on to
			// spans_latest's check or to spans, which hold it.) The
			// parts' min/max index answers this (3–6 ms at 10M spans).
			newest, err := s.newestStart(ctx)
			if err != nil {
				return nil, err
			}
			if !newest.Before(upper) {
				if page, err = s.spansPage(ctx, "{{spans}}", where, params, lower); err != nil {
					return nil, err
				}
			}
		}
		if len(page.Spans) > f.Limit || lower.IsZero() {
			break
		}
		read = lower
		if table != "{{recent}}" {
			continue
		}
		// Less than a page started in the last hour (calls slowed or
		// stopped): the next probe, the last day, would read a day of
		// spans whole (the table is sorted by tool first; 70–160 ms at
		// 10M spans) for a page that may be hours old. The newest leaves
		// (spans_latest) hold it unless calls came late or filters leave
		// too few of them. Not for one tool: spans is sorted by tool, so
		// the hour before its newest span is a few granules, cheaper
		// than the check (and the tool may have few of the leaves).
		if f.Tool == "" {
			latest, err := s.latestPage(ctx, where, params, f.Limit)
			if err != nil {
				return nil, err
			}
			if latest != nil {
				page = latest
				break
			}
		}
		if len(page.Spans) > 0 {
			continue
		}
		// No call in the last hour: ask for the newest start and probe
		// the hour before it.
		newest, err := s.newestStart(ctx)
		if err != nil {
			return nil, err
		}
		if !newest.Before(lower) {
			continue // filters left the last hour out, not a pause
		}
		lower = newest.Add(-time.Hour)
		if page, err = s.spansPage(ctx, "{{spans}}", where, params, lower); err != nil {
			return nil, err
		}
		if len(page.Spans) > f.Limit {
			break
		}
		read = lower
	}
	if len(page.Spans) > f.Limit {
		page.Spans = page.Spans[:f.Limit]
		last := page.Spans[len(page.Spans)-1]
		raw, _ := json.Marshal(cursor{TS: last.TSStart, ID: last.RecordID})
		page.Next = base64.RawURLEncoding.EncodeToString(raw)
	}
	return page, nil
}

// latestPage reads a first page (one span more than limit) from the
// newest leaves, spans_latest, and returns it only when spans proves it
// whole: the spans matching where that started at or after its oldest
// are exactly its leaves. Otherwise — a call that came after newer ones
// and lost its slot, spans gone from spans, a tie at the oldest start, or
// fewer matching leaves than a page — it returns nil, and the caller
// reads spans. At 10M spans the two reads take 10–25 ms where the
// newest hour of spans takes 75–90.
func (s *Store) latestPage(ctx context.Context, where []string, params clickhouse.Parameters, limit int) (*SpanPage, error) {
	page, err := s.spansPage(ctx, "{{latest}}", where, params, time.Time{})
	if err != nil {
		return nil, err
	}
	if len(page.Spans) <= limit {
		return nil, nil
	}
	origins := make([]string, len(page.Spans))
	leaves := make([]uint64, len(page.Spans))
	for i, r := range page.Spans {
		origins[i], leaves[i] = r.LogOrigin, r.LeafIndex
	}
	params = maps.Clone(params)
	params["latest_from"] = page.Spans[len(page.Spans)-1].TSStart.UTC().Format(tsFmt)
	params["latest_origins"], params["latest_leaves"] = arrayParam(origins), uintArrayParam(leaves)
	// Leaves, not record ids: two small columns to read, not a string.
	q := `SELECT uniqExact(log_origin, leaf_index),
		countIf(NOT has(arrayZip({latest_origins:Array(String)}, {latest_leaves:Array(UInt64)}), (log_origin, leaf_index)))
	FROM {{spans}} WHERE ` + strings.Join(where, " AND ") + ` AND ts_start >= {latest_from:DateTime64(9, 'UTC')}`
	var found, others uint64
	if err := s.queryRow(clickhouse.Context(ctx, clickhouse.WithParameters(params)), q).Scan(&found, &others); err != nil {
		return nil, fmt.Errorf("latest spans check: %w", err)
	}
	if found != uint64(len(page.Spans)) || others != 0 {
		return nil, nil
	}
	return page, nil
}

// newestStart is the newest start of all spans, which the parts'
// min/max index answers without reading them.
func (s *Store) newestStart(ctx context.Context) (time.Time, error) {
	var newest time.Time
	if err := s.queryRow(ctx, `SELECT max(ts_start) FROM {{spans}}`).Scan(&newest); err != nil {
		return newest, fmt.Errorf("newest span: %w", err)
	}
	return newest, nil
}

// tsFmt is how span times are bound as DateTime64(9) parameters.
const tsFmt = "2006-01-02 15:04:05.000000000"

// spansHolding is the table to read the spans that started in [from, to)
// from, with FINAL: {{recent}} when it holds them all — those that
// started in the 2 hours before now (its view keeps 3 hours back from
// each insert, its TTL 3 hours from each start) — a read of its last
// granules; else {{spans}}, sorted by tool first: a granule per tool.
func spansHolding(from, to time.Time) string {
	now := time.Now()
	if !from.Before(now.Add(-2*time.Hour)) && !to.After(now) {
		return "{{recent}}"
	}
	return "{{spans}}"
}

// spanProbes are how far back from the page's upper end Spans looks
// first; 0 is no bound.
var spanProbes = []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 0}

// spansPage reads one page from table ({{spans}} or {{recent}}): the spans matching where (and, when lower is
// set, starting at or after it), newest first, one more than the limit
// to tell whether another page follows.
func (s *Store) spansPage(ctx context.Context, table string, where []string, params clickhouse.Parameters, lower time.Time) (*SpanPage, error) {
	if !lower.IsZero() {
		where = append(slices.Clip(where), "ts_start >= {probe:DateTime64(9, 'UTC')}")
		params = maps.Clone(params)
		params["probe"] = lower.Format(tsFmt)
	}
	q := `SELECT record_id, ts_start, ts_end, latency_us / 1000, actor_id, tool_name, tool_server, tool_group, trace_id, span_id,
		parent_span_id, outcome_status, error_code, error_message, policy_decision, cost_amount, cost_currency, workflow_id, plan_id, elevation_scopes, elevation_approver, log_origin, leaf_index
	FROM ` + table + ` FINAL WHERE ` + strings.Join(where, " AND ") + `
	ORDER BY ts_start DESC, record_id DESC LIMIT {limit:UInt32}`
	rows, err := s.query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), q)
	if err != nil {
		return nil, fmt.Errorf("spans query: %w", err)
	}
	defer rows.Close()
	page := &SpanPage{Spans: []SpanRow{}}
	for rows.Next() {
		var r SpanRow
		if err := rows.Scan(&r.RecordID, &r.TSStart, &r.TSEnd, &r.LatencyMs, &r.ActorID, &r.Tool, &r.ToolServer, &r.ToolGroup, &r.TraceID, &r.SpanID,
			&r.ParentSpanID, &r.Status, &r.ErrorCode, &r.ErrorMessage, &r.PolicyDecision, &r.CostAmount, &r.CostCurrency, &r.WorkflowID, &r.PlanID, &r.ElevationScopes, &r.ElevationApprover, &r.LogOrigin, &r.LeafIndex); err != nil {
			return nil, err
		}
		if r.ElevationScopes == nil {
			r.ElevationScopes = []string{}
		}
		page.Spans = append(page.Spans, r)
	}
	return page, rows.Err()
}
