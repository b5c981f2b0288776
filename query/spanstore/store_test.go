package spanstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/proofline/proofline/schemas"
)

// The embedded engine runs on one data directory per process, so the
// tests of this package share one store and reset the table between them.
var shared = sync.OnceValues(func() (*Store, error) {
	dir, err := os.MkdirTemp("", "proofline-spanstore-test")
	if err != nil {
		return nil, err
	}
	s, err := Open(context.Background(), Config{DataDir: dir})
	if err != nil {
		return nil, err
	}
	return s, s.Migrate(context.Background())
})

// rerunBackfill empties tables, as if the store predated them, and
// forgets and applies again the migrations of versions, whose backfills
// refill them.
func rerunBackfill(t *testing.T, s *Store, tables []string, versions ...int) {
	t.Helper()
	ctx := context.Background()
	for _, table := range tables {
		if err := s.conn.Exec(ctx, "TRUNCATE TABLE "+table); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range versions {
		if err := s.conn.Exec(ctx, `DELETE FROM proofline_schema_migrations WHERE version = ?`, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
}

func testStore(t *testing.T) *Store {
	t.Helper()
	s, err := shared()
	if err != nil {
		t.Fatalf("open span store on the embedded engine: %v", err)
	}
	for _, table := range []string{"spans", "spans_latency_1m", "spans_latency_1h", "tool_catalog", "tool_onboarding", "spans_slo_1m", "slo_objectives", "spans_cost_1m", "spans_plans_1h", "spans_cost_tool_1m", "spans_cost_workflow_1h", "spans_cost_tool_1h", "spans_recent", "spans_latest",
		"plans_sealed_1h", "plans_open_1h", "plans_pending", "plans_seal_state", "plans_seal_scratch", "plans_seal_marks",
		"plans_calls_1h", "spans_failures_1h"} {
		if err := s.conn.Exec(context.Background(), "TRUNCATE TABLE "+table); err != nil {
			t.Fatal(err)
		}
	}
	// The shared store forgets objectives a previous test synced: the
	// error budget reads spans until a test syncs its own.
	s.objMu.Lock()
	s.objectives = nil
	s.objMu.Unlock()
	return s
}

// span makes a record for tool (in group) that took latency, started at.
func span(id, tool, group string, at time.Time, latency time.Duration, leaf uint64) Span {
	return Span{
		Record: &schemas.CallRecord{
			RecordID:   id,
			TSStart:    schemas.Timestamp{Time: at},
			TSEnd:      schemas.Timestamp{Time: at.Add(latency)},
			Actor:      schemas.Actor{ID: "agent-1", Type: schemas.ActorAgent},
			Tool:       schemas.Tool{Name: tool, Group: group},
			Policy:     schemas.Policy{Decision: schemas.DecisionAllow},
			Outcome:    schemas.Outcome{Status: schemas.StatusOK},
			Trace:      &schemas.Trace{TraceID: fmt.Sprintf("%032x", leaf+1), SpanID: fmt.Sprintf("%016x", leaf+1)},
			Cost:       &schemas.Cost{Amount: 0.01, Currency: "USD", TokensIn: 10},
			Attributes: map[string]string{"env": "test"},
		},
		LogOrigin: "test.proofline/log",
		LeafIndex: leaf,
	}
}

func TestLatencyKPI(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	// Recent timestamps: the table's TTL deletes old fixtures on merge.
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var spans []Span
	// search (group tickets): 1..100 ms. write (group tickets): 10 × 200 ms.
	for i := 1; i <= 100; i++ {
		spans = append(spans, span(fmt.Sprintf("s-%03d", i), "search", "tickets", base.Add(time.Duration(i)*time.Second), time.Duration(i)*time.Millisecond, uint64(i)))
	}
	for i := 0; i < 10; i++ {
		spans = append(spans, span(fmt.Sprintf("w-%03d", i), "write", "tickets", base.Add(time.Duration(i)*time.Second), 200*time.Millisecond, uint64(200+i)))
	}
	// One call outside the window must not count.
	spans = append(spans, span("old", "search", "tickets", base.Add(-2*time.Hour), time.Second, 999))
	if err := s.Insert(ctx, spans); err != nil {
		t.Fatal(err)
	}
	// A retried batch must not double anything.
	if err := s.Insert(ctx, spans[:50]); err != nil {
		t.Fatal(err)
	}
	from, to := base.Add(-time.Minute), base.Add(time.Hour)
	got, err := s.Latency(ctx, LatencyQuery{By: "tool", From: from, To: to, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	// quantileExact(q) over n sorted values is the value at index ⌊q·n⌋:
	// search 1..100 ms → p50 = 51, p95 = 96, p99 = 100.
	want := []LatencyRow{
		{Key: "search", Calls: 100, P50ms: 51, P95ms: 96, P99ms: 100},
		{Key: "write", Calls: 10, P50ms: 200, P95ms: 200, P99ms: 200},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("latency by tool\n got %+v\nwant %+v", got, want)
	}
	got, err = s.Latency(ctx, LatencyQuery{By: "group", From: from, To: to, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	// tickets: 1..100 and ten 200s → 110 values; index ⌊0.95·110⌋ = 104 → 200;
	// index ⌊0.5·110⌋ = 55 → 56.
	if len(got) != 1 || got[0].Calls != 110 || got[0].P50ms != 56 || got[0].P95ms != 200 {
		t.Fatalf("latency by group: %+v", got)
	}
	if _, err := s.Latency(ctx, LatencyQuery{By: "tool_name; DROP TABLE spans", From: from, To: to}); err == nil {
		t.Fatal("an unknown grouping was accepted")
	}
	// Every row carries its evidence pointer.
	var origin string
	var leaf uint64
	if err := s.conn.QueryRow(ctx, `SELECT log_origin, leaf_index FROM spans FINAL WHERE record_id = 's-042'`).Scan(&origin, &leaf); err != nil {
		t.Fatal(err)
	}
	if origin != "test.proofline/log" || leaf != 42 {
		t.Fatalf("evidence pointer %s/%d", origin, leaf)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	for i := 0; i < 3; i++ {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate run %d: %v", i, err)
		}
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, `SELECT count() FROM proofline_schema_migrations FINAL WHERE version = 1`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration 1 recorded %d times (%v)", n, err)
	}
	var ttl string
	if err := s.conn.QueryRow(ctx, `SELECT create_table_query FROM system.tables WHERE name = 'spans'`).Scan(&ttl); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TTL toDateTime(ts_start) + toIntervalDay(90)", "bloom_filter", "ReplacingMergeTree", "PARTITION BY toDate(ts_start)", "CODEC(T64, ZSTD(1))"} {
		if !strings.Contains(ttl, want) {
			t.Errorf("spans DDL lacks %q:\n%s", want, ttl)
		}
	}
}

// TestClusterDDLParses checks the cluster-mode DDL (ON CLUSTER, replicated
// engines) with the engine's own parser; no cluster runs here.
func TestClusterDDLParses(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	vars, err := DDLVars(Config{RetentionDays: 30, Cluster: "proofline"})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrations(vars)
	if err != nil {
		t.Fatal(err)
	}
	var sawDistributed bool
	for _, m := range ms {
		for _, st := range m.statements {
			sawDistributed = sawDistributed || strings.Contains(st, "ENGINE = Distributed(proofline, currentDatabase(), spans, cityHash64(record_id))")
			switch {
			case strings.HasPrefix(st, "CREATE TABLE"):
				if !strings.Contains(st, "ON CLUSTER proofline") || !strings.Contains(st, "Replicated") && !strings.Contains(st, "Distributed") {
					t.Fatalf("cluster table is not replicated:\n%s", st)
				}
			case strings.HasPrefix(st, "CREATE MATERIALIZED VIEW"), strings.HasPrefix(st, "TRUNCATE"), strings.HasPrefix(st, "ALTER TABLE"), strings.HasPrefix(st, "DROP VIEW"):
				if !strings.Contains(st, "ON CLUSTER proofline") {
					t.Fatalf("cluster DDL is not ON CLUSTER:\n%s", st)
				}
			case strings.HasPrefix(st, "INSERT INTO"):
				// The backfill reads and writes the whole cluster.
				if strings.Contains(st, "INSERT INTO spans_latest_all") {
					// Its target keeps one row per slot: no FINAL needed.
					if !strings.Contains(st, "FROM spans_all") {
						t.Fatalf("cluster backfill does not go through the Distributed tables:\n%s", st)
					}
					break
				}
				if !strings.Contains(st, "INSERT INTO spans_latency_1m_all") && !strings.Contains(st, "INSERT INTO spans_latency_1h_all") &&
					!strings.Contains(st, "INSERT INTO tool_onboarding_all") && !strings.Contains(st, "INSERT INTO spans_cost_1m_all") &&
					!strings.Contains(st, "INSERT INTO spans_plans_1h_all") && !strings.Contains(st, "INSERT INTO spans_cost_tool_1m_all") &&
					!strings.Contains(st, "INSERT INTO spans_cost_workflow_1h_all") && !strings.Contains(st, "INSERT INTO spans_cost_tool_1h_all") &&
					!strings.Contains(st, "INSERT INTO spans_recent_all") && !strings.Contains(st, "INSERT INTO plans_calls_1h_all") &&
					!strings.Contains(st, "INSERT INTO spans_failures_1h_all") || !strings.Contains(st, "FROM spans_all FINAL") {
					t.Fatalf("cluster backfill does not go through the Distributed tables:\n%s", st)
				}
			default:
				t.Fatalf("unexpected statement in the migrations:\n%s", st)
			}
			if err := s.conn.Exec(ctx, "EXPLAIN AST "+st); err != nil {
				t.Fatalf("cluster DDL does not parse: %v\n%s", err, st)
			}
		}
	}
	if !sawDistributed {
		t.Fatal("cluster migrations have no Distributed spans_all")
	}
	// Without a cluster the cluster-only migration is not applied.
	local, _ := DDLVars(Config{RetentionDays: 30})
	lms, err := migrations(local)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range lms {
		if m.version == 2 || m.version == 4 || m.version == 7 || m.version == 9 || m.version == 10 || m.version == 13 || m.version == 15 || m.version == 19 || m.version == 22 || m.version == 25 || m.version == 28 || m.version == 31 || m.version == 35 || m.version == 40 {
			t.Fatalf("single-node migrations include the cluster-only %04d_%s", m.version, m.name)
		}
	}
	if len(lms) != len(ms)-14 {
		t.Fatalf("%d single-node migrations, %d cluster ones: want exactly the fourteen Distributed-table ones apart", len(lms), len(ms))
	}
	if _, err := DDLVars(Config{RetentionDays: 30, Cluster: "x; DROP"}); err == nil {
		t.Fatal("a cluster name with SQL in it was accepted")
	}
	if _, err := DDLVars(Config{RetentionDays: 0}); err == nil {
		t.Fatal("zero retention accepted")
	}
}

// TestSpansPagesOverTime: the first page looks at the last hour, day and
// week before the whole table; spans spread over a month — and two that
// start after now, as a producer whose clock runs ahead sends them —
// still come in order, each once, whatever the page size, with from/to
// and with a filter that only old spans match.
func TestSpansPagesOverTime(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	now := time.Now().UTC()
	ages := []time.Duration{-2 * time.Hour, -20 * time.Minute, 10 * time.Minute, 50 * time.Minute, 3 * time.Hour, 2 * 24 * time.Hour, 6 * 24 * time.Hour, 9 * 24 * time.Hour, 30 * 24 * time.Hour}
	var spans []Span
	var all []string
	for i, age := range ages {
		tool := "recent"
		if age > 24*time.Hour {
			tool = "old"
		}
		spans = append(spans, span(fmt.Sprintf("t-%d", i), tool, "g", now.Add(-age), time.Millisecond, uint64(i)))
		all = append(all, fmt.Sprintf("t-%d", i))
	}
	if err := s.Insert(ctx, spans); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    SpanFilter
		want []string
	}{
		{SpanFilter{Limit: 1}, all},
		{SpanFilter{Limit: 2}, all},
		{SpanFilter{Limit: 3}, all},
		{SpanFilter{Limit: 100}, all},
		{SpanFilter{Limit: 2, Tool: "old"}, all[5:]},
		{SpanFilter{Limit: 1, Tool: "recent"}, all[:5]},
		{SpanFilter{Limit: 2, From: now.Add(-7 * 24 * time.Hour), To: now.Add(-time.Hour)}, all[4:7]},
		{SpanFilter{Limit: 1, To: now.Add(-8 * 24 * time.Hour)}, all[7:]},
	} {
		if got := pageAll(t, s, c.f); strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%+v: paged %v, want %v", c.f, got, c.want)
		}
	}
}

// pageAll pages through s with f from its first page, checking each page
// keeps to the limit, and returns the record ids in the order served (at
// most a dozen pages).
func pageAll(t *testing.T, s *Store, f SpanFilter) []string {
	t.Helper()
	var seen []string
	for n := 0; ; n++ {
		p, err := s.Spans(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Spans) > f.Limit {
			t.Fatalf("%+v: page of %d, limit %d", f, len(p.Spans), f.Limit)
		}
		for _, r := range p.Spans {
			seen = append(seen, r.RecordID)
		}
		if p.Next == "" || n > 10 {
			return seen
		}
		f.Cursor = p.Next
	}
}

// TestSpansFirstPageAfterCallsStopped: when no call started in the last
// hour (the recent spans hold none), the first page is the newest spans
// however old, in order, each once, paged to the end — with and without
// a filter, and with a filter that matches none of the newest.
func TestSpansFirstPageAfterCallsStopped(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	now := time.Now().UTC()
	ages := []time.Duration{4 * time.Hour, 4*time.Hour + 20*time.Minute, 5*time.Hour + 30*time.Minute, 2 * 24 * time.Hour, 10 * 24 * time.Hour}
	var spans []Span
	var all []string
	for i, age := range ages {
		tool := "a"
		if i%2 == 1 {
			tool = "b"
		}
		spans = append(spans, span(fmt.Sprintf("q-%d", i), tool, "g", now.Add(-age), time.Millisecond, uint64(i)))
		all = append(all, fmt.Sprintf("q-%d", i))
	}
	if err := s.Insert(ctx, spans); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    SpanFilter
		want []string
	}{
		{SpanFilter{Limit: 1}, all},
		{SpanFilter{Limit: 2}, all},
		{SpanFilter{Limit: 3}, all},
		{SpanFilter{Limit: 100}, all},
		{SpanFilter{Limit: 1, Tool: "b"}, []string{all[1], all[3]}},
		{SpanFilter{Limit: 1, Tool: "a"}, []string{all[0], all[2], all[4]}},
		{SpanFilter{Limit: 2, From: now.Add(-3 * 24 * time.Hour)}, all[:4]},
	} {
		got := pageAll(t, s, c.f)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%+v: paged %v, want %v", c.f, got, c.want)
		}
	}
}

func TestSpansPagingAndFilters(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var spans []Span
	for i := 0; i < 25; i++ {
		tool := "a"
		if i%5 == 0 {
			tool = "b"
		}
		spans = append(spans, span(fmt.Sprintf("p-%02d", i), tool, "g", base.Add(time.Duration(i)*time.Second), time.Millisecond, uint64(i)))
	}
	// What an SRE reads of a failed call in a plan: on the row itself.
	failed := spans[10].Record
	failed.Tool.Server = "jira-mcp"
	failed.Trace.ParentSpanID = "00f067aa0ba902b7"
	failed.Outcome = schemas.Outcome{Status: schemas.StatusToolError, ErrorCode: "E42", ErrorMessage: "ticket not found"}
	failed.PlanID = "plan-7"
	failed.Cost = &schemas.Cost{Amount: 0.5, Currency: "EUR"}
	// Two calls under an elevation, one of them approved by bob.
	spans[3].Record.Elevation = &schemas.Elevation{Scopes: []string{"payments:write"}, Approver: "bob", Reason: "INC-7"}
	spans[4].Record.Elevation = &schemas.Elevation{Scopes: []string{"tickets:admin"}}
	if err := s.Insert(ctx, spans); err != nil {
		t.Fatal(err)
	}
	var seen []string
	cur := ""
	for pages := 0; ; pages++ {
		p, err := s.Spans(ctx, SpanFilter{Tool: "a", Limit: 7, Cursor: cur})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Spans {
			seen = append(seen, r.RecordID)
		}
		if p.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		cur = p.Next
	}
	// 20 spans of tool a, newest first, each once.
	if len(seen) != 20 || seen[0] != "p-24" || seen[19] != "p-01" {
		t.Fatalf("paged %d spans: %v", len(seen), seen)
	}
	p, err := s.Spans(ctx, SpanFilter{TraceID: fmt.Sprintf("%032x", 11)})
	if err != nil || len(p.Spans) != 1 || p.Spans[0].RecordID != "p-10" || p.Spans[0].LeafIndex != 10 {
		t.Fatalf("by trace id: %+v %v", p, err)
	}
	if r := p.Spans[0]; r.ToolServer != "jira-mcp" || r.ParentSpanID != "00f067aa0ba902b7" || r.Status != "tool_error" ||
		r.ErrorCode != "E42" || r.ErrorMessage != "ticket not found" || r.PlanID != "plan-7" || r.CostAmount != 0.5 || r.CostCurrency != "EUR" {
		t.Fatalf("the failed call's row: %+v", r)
	}
	yes, no := true, false
	for _, c := range []struct {
		f    SpanFilter
		want []string
	}{
		{SpanFilter{Elevated: &yes}, []string{"p-04", "p-03"}},
		{SpanFilter{Approver: "bob"}, []string{"p-03"}},
		{SpanFilter{Server: "jira-mcp"}, []string{"p-10"}},
		{SpanFilter{Elevated: &no, Tool: "b"}, []string{"p-20", "p-15", "p-10", "p-05", "p-00"}},
	} {
		p, err := s.Spans(ctx, c.f)
		var got []string
		for _, r := range p.Spans {
			got = append(got, r.RecordID)
		}
		if err != nil || strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Fatalf("filter %+v: %v %v, want %v", c.f, got, err, c.want)
		}
		if c.f.Approver != "" && (p.Spans[0].ElevationApprover != "bob" || strings.Join(p.Spans[0].ElevationScopes, ",") != "payments:write") {
			t.Fatalf("the elevated call's row: %+v", p.Spans[0])
		}
	}
	// Filter values are bound, never SQL: an injection attempt matches nothing.
	p, err = s.Spans(ctx, SpanFilter{Tool: "a' OR '1'='1"})
	if err != nil || len(p.Spans) != 0 {
		t.Fatalf("injection attempt: %+v %v", p, err)
	}
	if _, err := s.Spans(ctx, SpanFilter{Cursor: "not-a-cursor"}); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
}

// TestRecentSpansHoldTheLastHours: spans_recent, which a first page of
// /v1/spans reads for the hour before now, holds every span that started
// in the last 3 hours and none older — inserted through its view or by
// its backfill (migration 0032) — and a first page read from it is the
// page the spans table gives.
func TestRecentSpansHoldTheLastHours(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	now := time.Now().UTC()
	var spans []Span
	recent := 0
	for i := 0; i < 240; i++ {
		age := time.Duration(i) * 97 * time.Second // 0 to 6.5 hours
		if age < 3*time.Hour-time.Minute {
			recent++
		}
		sp := span(fmt.Sprintf("r-%03d", i), []string{"a", "b", "c"}[i%3], "g", now.Add(-age), time.Millisecond, uint64(i))
		if i%4 == 0 {
			sp.Record.Outcome = schemas.Outcome{Status: schemas.StatusToolError, ErrorCode: "E1"}
		}
		spans = append(spans, sp)
	}
	count := func() int {
		t.Helper()
		var n uint64
		// Spans within a minute of the 3-hour edge may be on either side.
		if err := s.queryRow(ctx, `SELECT count() FROM spans_recent WHERE ts_start >= now64(9, 'UTC') - INTERVAL 179 MINUTE`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		var old uint64
		if err := s.queryRow(ctx, `SELECT count() FROM spans_recent WHERE ts_start < now64(9, 'UTC') - INTERVAL 181 MINUTE`).Scan(&old); err != nil {
			t.Fatal(err)
		}
		if old != 0 {
			t.Errorf("spans_recent holds %d spans older than 3 hours", old)
		}
		return int(n)
	}
	insert := func(sp []Span) {
		t.Helper()
		if err := s.Insert(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	// Every other span before the table existed (the backfill), the
	// others through the view: both halves span the 3 hours.
	var before, after []Span
	for i, sp := range spans {
		if i%2 == 0 {
			before = append(before, sp)
		} else {
			after = append(after, sp)
		}
	}
	insert(before)
	rerunBackfill(t, s, []string{"spans_recent"}, 32)
	insert(after)
	if got := count(); got != recent {
		t.Fatalf("spans_recent holds %d spans of the last 3 hours, want %d", got, recent)
	}
	for _, f := range []SpanFilter{{Limit: 10}, {Limit: 25, Tool: "b"}, {Limit: 5, Status: "tool_error"}, {Limit: 100}} {
		got, err := s.Spans(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		want := pageFromSpans(t, s, f)
		if pageIDs(got) != pageIDs(want) {
			t.Errorf("%+v: first page %s, from spans %s", f, pageIDs(got), pageIDs(want))
		}
	}
}

// TestLatestSpansHoldTheNewestLeaves: spans_latest holds the newest leaf
// of each of its 4096 slots — inserted through its view or by its
// backfill (migration 0041) — and when no call started in the last hour
// a first page is read from it only when spans proves it whole: never
// when a call that started later lost its slot to a newer leaf, nor when
// a filter leaves fewer than a page; either way the page is the one the
// spans table gives.
func TestLatestSpansHoldTheNewestLeaves(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	now := time.Now().UTC()
	const n = 10000
	var spans []Span
	for i := 0; i < n; i++ {
		// Started 6 to 3.2 hours ago, in leaf order.
		sp := span(fmt.Sprintf("l-%05d", i), []string{"a", "b"}[i%2], "g", now.Add(-6*time.Hour+time.Duration(i)*time.Second), time.Millisecond, uint64(i))
		if i%1000 == 999 {
			sp.Record.Outcome = schemas.Outcome{Status: schemas.StatusToolError, ErrorCode: "E1"}
		}
		spans = append(spans, sp)
	}
	insert := func(sp []Span) {
		t.Helper()
		if err := s.Insert(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	held := func(upTo uint64) {
		t.Helper()
		var rows, oldest uint64
		if err := s.queryRow(ctx, `SELECT count(), min(leaf_index) FROM spans_latest FINAL`).Scan(&rows, &oldest); err != nil {
			t.Fatal(err)
		}
		if rows != 4096 || oldest != upTo-4096 {
			t.Fatalf("spans_latest holds %d leaves from %d, want 4096 from %d", rows, oldest, upTo-4096)
		}
	}
	// Half in one insert through the view (more than it keeps), then
	// again by the backfill, then the rest in inserts of 700.
	insert(spans[:n/2])
	held(n / 2)
	rerunBackfill(t, s, []string{"spans_latest"}, 41)
	held(n / 2)
	for i := n / 2; i < n; i += 700 {
		insert(spans[i:min(i+700, n)])
	}
	held(n)
	check := func(when string, f SpanFilter, fromLatest bool) {
		t.Helper()
		where, params := spansWhere(f)
		latest, err := s.latestPage(ctx, where, params, f.Limit)
		if err != nil {
			t.Fatal(err)
		}
		if (latest != nil) != fromLatest {
			t.Errorf("%s, %+v: page from spans_latest %v, want %v", when, f, latest != nil, fromLatest)
		}
		got, err := s.Spans(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if want := pageFromSpans(t, s, f); pageIDs(got) != pageIDs(want) {
			t.Errorf("%s, %+v: first page %s, from spans %s", when, f, pageIDs(got), pageIDs(want))
		}
	}
	for _, c := range []struct {
		f          SpanFilter
		fromLatest bool
	}{
		{SpanFilter{Limit: 100}, true},
		{SpanFilter{Limit: MaxPage}, true},
		{SpanFilter{Limit: 10, Tool: "b"}, true},
		// Four errors among the newest leaves: not a page of 10.
		{SpanFilter{Limit: 10, Status: "tool_error"}, false},
	} {
		check("leaves in start order", c.f, c.fromLatest)
	}
	// A call of another log that started after all of them, with a leaf
	// index whose slot holds a newer leaf of the first log: the first
	// page starts with it, which only spans knows.
	late := span("late", "a", "g", now.Add(-90*time.Minute), time.Millisecond, 100)
	late.LogOrigin = "other.proofline/log"
	insert([]Span{late})
	for _, f := range []SpanFilter{{Limit: 100}, {Limit: 10, Tool: "a"}} {
		check("a late call", f, false)
	}
	if p, err := s.Spans(ctx, SpanFilter{Limit: 1}); err != nil || len(p.Spans) != 1 || p.Spans[0].RecordID != "late" {
		t.Fatalf("first page after a late call: %+v, %v", p, err)
	}
}

// spansWhere is the condition and parameters of f's tool and status
// filters, as Spans builds them, with f's page size.
func spansWhere(f SpanFilter) ([]string, clickhouse.Parameters) {
	where, params := []string{"1"}, clickhouse.Parameters{"limit": fmt.Sprint(f.Limit + 1)}
	if f.Tool != "" {
		where, params["tool"] = append(where, "tool_name = {tool:String}"), f.Tool
	}
	if f.Status != "" {
		where, params["status"] = append(where, "outcome_status = {status:String}"), f.Status
	}
	return where, params
}

// pageFromSpans is the first page for f (tool and status filters only)
// read from the spans table alone, the answer Spans' shortcuts must give.
func pageFromSpans(t *testing.T, s *Store, f SpanFilter) *SpanPage {
	t.Helper()
	where, params := spansWhere(f)
	p, err := s.spansPage(context.Background(), "{{spans}}", where, params, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	p.Spans = p.Spans[:min(len(p.Spans), f.Limit)]
	return p
}

// pageIDs is the record ids of a page, in order.
func pageIDs(p *SpanPage) string {
	var out []string
	for _, r := range p.Spans {
		out = append(out, r.RecordID)
	}
	return strings.Join(out, ",")
}
