// Command spans benchmarks the span store against the common alternative
// in the same engine: the same synthetic spans go into proofline's spans
// table and into a table with the OpenTelemetry Collector contrib
// ClickHouse exporter's otel_traces schema. It reports bytes per span on
// disk for both, proofline's insert rate against a raw engine insert of
// the same rows, and the latency KPI's query time.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/proofline/proofline/query/chdb"
	"github.com/proofline/proofline/query/spanstore"
	"github.com/proofline/proofline/schemas"
)

// otelTracesDDL is the schema the OpenTelemetry Collector contrib
// ClickHouse exporter creates for traces (its traces_table.sql), without
// TTL: the comparison target.
const otelTracesDDL = `CREATE TABLE IF NOT EXISTS otel_traces (
	Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
	TraceId String CODEC(ZSTD(1)),
	SpanId String CODEC(ZSTD(1)),
	ParentSpanId String CODEC(ZSTD(1)),
	TraceState String CODEC(ZSTD(1)),
	SpanName LowCardinality(String) CODEC(ZSTD(1)),
	SpanKind LowCardinality(String) CODEC(ZSTD(1)),
	ServiceName LowCardinality(String) CODEC(ZSTD(1)),
	ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	ScopeName String CODEC(ZSTD(1)),
	ScopeVersion String CODEC(ZSTD(1)),
	SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	Duration UInt64 CODEC(ZSTD(1)),
	StatusCode LowCardinality(String) CODEC(ZSTD(1)),
	StatusMessage String CODEC(ZSTD(1)),
	Events Nested (Timestamp DateTime64(9), Name LowCardinality(String), Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
	Links Nested (TraceId String, SpanId String, TraceState String, Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
	INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
	INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree PARTITION BY toDate(Timestamp) ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
SETTINGS index_granularity = 8192`

func main() {
	n := flag.Int("spans", 1_000_000, "spans to insert into each table")
	chunk := flag.Int("batch", 50_000, "spans per insert")
	queries := flag.Int("queries", 30, "KPI queries of each kind to time")
	out := flag.String("out", "", "also write the Markdown report to this file")
	days := flag.Int("days", 1, "days the spans are spread over, ending now")
	nTools := flag.Int("tools", 8, "tools")
	nServers := flag.Int("servers", 8, "servers the tools are spread over")
	compare := flag.Bool("compare", true, "also insert into spans_raw and otel_traces (storage and insert ratios); false times the KPIs only")
	planMax := flag.Duration("plan-max-duration", spanstore.DefaultPlanMaxDuration, "the store's longest plan duration (serve's --plan-max-duration): the plans KPI groups that and another 0.5-1.5 hours of plans at each query")
	dataDir := flag.String("dir", "", "keep the engine's data in this directory; when it already holds spans, time the KPIs over them without inserting (iterate on queries without re-inserting 10M spans)")
	flag.Parse()
	shape := shape{days: *days, tools: *nTools, servers: *nServers}
	if err := run(context.Background(), *n, *chunk, *queries, *out, shape, *compare, *dataDir, *planMax); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// shape is how the spans spread: over days ending now, tools on servers.
type shape struct{ days, tools, servers int }

func run(ctx context.Context, n, chunk, queries int, out string, sh shape, compare bool, dir string, planMax time.Duration) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "proofline-bench-spans")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := spanstore.Open(ctx, spanstore.Config{DataDir: dir, PlanMaxDuration: planMax})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	eng, err := chdb.Open(ctx, chdb.Options{DataDir: filepath.Join(dir, "clickhouse")})
	if err != nil {
		return err
	}
	defer eng.Close()
	conn, err := clickhouse.Open(&clickhouse.Options{Protocol: clickhouse.HTTP, Addr: []string{"chdb.embedded:8123"},
		TransportFunc: func(*http.Transport) (http.RoundTripper, error) { return eng.Transport(), nil }})
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, ddl := range []string{otelTracesDDL, `CREATE TABLE IF NOT EXISTS spans_raw AS spans`} {
		if err := conn.Exec(ctx, ddl); err != nil {
			return fmt.Errorf("ddl: %w", err)
		}
	}
	var stored uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM spans`).Scan(&stored); err != nil {
		return err
	}
	if stored > 0 {
		fmt.Fprintf(os.Stderr, "%s holds %d spans: timing the KPIs over them\n", dir, stored)
		kpis, err := timeKPIs(ctx, st, time.Now().UTC(), sh, queries)
		if err != nil {
			return err
		}
		fmt.Print(renderKPIs(int(stored), chunk, sh, kpis))
		return nil
	}

	now := time.Now().UTC()
	base := now.Add(-time.Duration(sh.days) * 24 * time.Hour)
	every := time.Duration(sh.days) * 24 * time.Hour / time.Duration(n)
	var tPL, tRaw, tOTel time.Duration
	for off := 0; off < n; off += chunk {
		spans := makeSpans(base, every, sh, off, min(chunk, n-off))
		t0 := time.Now()
		if err := st.Insert(ctx, spans); err != nil {
			return fmt.Errorf("proofline insert: %w", err)
		}
		tPL += time.Since(t0)
		if !compare {
			fmt.Fprintf(os.Stderr, "%d/%d spans\n", off+len(spans), n)
			continue
		}
		rows := jsonEachRow(spans)
		t0 = time.Now()
		if err := rawInsert(ctx, eng, filepath.Join(dir, "raw.json"), rows); err != nil {
			return fmt.Errorf("raw insert: %w", err)
		}
		tRaw += time.Since(t0)
		t0 = time.Now()
		if err := otelInsert(ctx, conn, spans); err != nil {
			return fmt.Errorf("otel insert: %w", err)
		}
		tOTel += time.Since(t0)
		fmt.Fprintf(os.Stderr, "%d/%d spans\n", off+len(spans), n)
	}
	// Everything proofline keeps besides spans — rollups, catalog,
	// objectives — is spent per span too, so it is merged and counted.
	var extra []string
	trows, err := conn.Query(ctx, `SELECT name FROM system.tables WHERE database = currentDatabase()
		AND engine LIKE '%MergeTree' AND name NOT IN ('spans', 'spans_raw', 'otel_traces', 'proofline_schema_migrations') ORDER BY name`)
	if err != nil {
		return err
	}
	for trows.Next() {
		var t string
		if err := trows.Scan(&t); err != nil {
			trows.Close()
			return err
		}
		extra = append(extra, t)
	}
	trows.Close()
	for _, t := range append([]string{"spans", "spans_raw", "otel_traces"}, extra...) {
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+t+" FINAL"); err != nil {
			return fmt.Errorf("optimize %s: %w", t, err)
		}
	}
	kpis, err := timeKPIs(ctx, st, now, sh, queries)
	if err != nil {
		return err
	}
	if !compare {
		report := renderKPIs(n, chunk, sh, kpis)
		fmt.Print(report)
		if out != "" {
			return os.WriteFile(out, []byte(report), 0o644)
		}
		return nil
	}
	size := func(table string) (float64, error) {
		var b, r uint64
		qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"t": table}))
		if err := conn.QueryRow(qctx, `SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE active AND table = {t:String}`).Scan(&b, &r); err != nil {
			return 0, err
		}
		if r == 0 {
			return 0, fmt.Errorf("%s is empty", table)
		}
		return float64(b) / float64(r), nil
	}
	bPL, err := size("spans")
	if err != nil {
		return err
	}
	bOT, err := size("otel_traces")
	if err != nil {
		return err
	}
	var rollupBytes uint64
	if err := conn.QueryRow(clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"t": "['" + strings.Join(extra, "','") + "']"})),
		`SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase() AND has({t:Array(String)}, table)`).Scan(&rollupBytes); err != nil {
		return err
	}
	bRollup := float64(rollupBytes) / float64(n)
	// Seconds off the minute, so both edges of the window are read from
	// spans, as for a real "last 7 days" ending now.
	from, to := base.Add(-time.Hour+17*time.Second), base.Add(48*time.Hour+43*time.Second)
	timeQuery := func(exact bool) ([]time.Duration, error) {
		var lat []time.Duration
		for i := 0; i < queries; i++ {
			t0 := time.Now()
			if _, err := st.Latency(ctx, spanstore.LatencyQuery{By: "tool", From: from, To: to, Exact: exact}); err != nil {
				return nil, err
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		return lat, nil
	}
	lat, err := timeQuery(false)
	if err != nil {
		return err
	}
	latExact, err := timeQuery(true)
	if err != nil {
		return err
	}
	report := render(n, chunk, bPL, bRollup, bOT, extra, tPL, tRaw, tOTel, lat, latExact) + "\n" + renderKPIs(n, chunk, sh, kpis)
	fmt.Print(report)
	if out != "" {
		return os.WriteFile(out, []byte(report), 0o644)
	}
	return nil
}

// toolMedianMs are tools' median latencies, cycled over the tools:
// latencies are lognormal around them, as service latencies are.
var toolMedianMs = []float64{40, 120, 15, 300, 8, 450, 900, 600}

// rng is span i's (or trace i's) own random source: the same span is
// made alike for each table it goes into, while ids and digests are
// random, as in real traffic — sequential ones compress to nothing and
// made the storage figures of earlier runs unrealistic.
func rng(kind, i uint64) *rand.Rand { return rand.New(rand.NewPCG(kind, i)) }

func randHexBytes(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(r.Uint32())
	}
	return hex.EncodeToString(b)
}

// uuidV7 is a UUIDv7 of t with random bits from r.
func uuidV7(t time.Time, r *rand.Rand) string {
	var u [16]byte
	ms := uint64(t.UnixMilli())
	for k := 0; k < 6; k++ {
		u[k] = byte(ms >> (40 - 8*k))
	}
	for k := 6; k < 16; k++ {
		u[k] = byte(r.Uint32())
	}
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// makeSpans makes spans off..off+n, one every every from base, round
// robin over the shape's tools, tool t on server t mod servers.
func makeSpans(base time.Time, every time.Duration, sh shape, off, n int) []spanstore.Span {
	statuses := []string{"ok", "ok", "ok", "ok", "ok", "ok", "tool_error", "policy_blocked", "system_error", "timeout"}
	out := make([]spanstore.Span, n)
	for j := range out {
		i := off + j
		ts := base.Add(time.Duration(i) * every)
		t := i % sh.tools
		tool := fmt.Sprintf("tool-%02d", t)
		server := fmt.Sprintf("mcp-%d", t%sh.servers)
		sr, tr := rng(1, uint64(i)), rng(2, uint64(i/8))
		latency := time.Duration(toolMedianMs[t%len(toolMedianMs)] * math.Exp(0.8*sr.NormFloat64()) * float64(time.Millisecond))
		traceID, rootSpan := randHexBytes(tr, 16), randHexBytes(tr, 8)
		r := &schemas.CallRecord{
			RecordID:     uuidV7(ts, sr),
			TSStart:      schemas.Timestamp{Time: ts},
			TSEnd:        schemas.Timestamp{Time: ts.Add(latency)},
			Actor:        schemas.Actor{ID: fmt.Sprintf("agent-%d", i%200), Type: schemas.ActorAgent, OnBehalfOf: fmt.Sprintf("user-%d@example.com", i%1000)},
			Tool:         schemas.Tool{Name: tool, Server: server, Version: "1.4.2", Group: fmt.Sprintf("group-%d", t%5)},
			MCP:          &schemas.MCP{Method: "tools/call", SessionID: uuidV7(ts, rng(3, uint64(i/40))), RequestID: fmt.Sprint(i % 1000), Transport: schemas.TransportHTTP},
			Trace:        &schemas.Trace{TraceID: traceID, SpanID: randHexBytes(sr, 8), ParentSpanID: rootSpan},
			ScopeGrants:  []string{"tickets:read", "tickets:write"}[:1+i%2],
			Policy:       schemas.Policy{Decision: schemas.DecisionAllow, Rule: "default-allow"},
			Outcome:      schemas.Outcome{Status: statuses[i%len(statuses)]},
			ArgsSHA256:   randHexBytes(sr, 32),
			ResultSHA256: randHexBytes(sr, 32),
			Cost:         &schemas.Cost{Amount: float64(i%977) / 10000, Currency: "USD", TokensIn: int64(i % 4000), TokensOut: int64(i % 900)},
			WorkflowID:   fmt.Sprintf("wf-%d", i%40),
			PlanID:       fmt.Sprintf("plan-%d", i/6),
			Region:       []string{"eu-west-1", "us-east-1"}[i%2],
			DataClass:    "internal",
			Attributes:   map[string]string{"env": "prod", "tenant": fmt.Sprintf("t-%d", i%25), "host": fmt.Sprintf("gw-%d", i%6)},
			IngestedBy:   "gw-1",
		}
		if r.Outcome.Status != "ok" {
			r.Outcome.ErrorCode = "E" + fmt.Sprint(400+i%7)
			r.Outcome.ErrorMessage = "upstream returned an error"
		}
		out[j] = spanstore.Span{Record: r, LogOrigin: "bench.proofline/log", LeafIndex: uint64(i)}
	}
	return out
}

// jsonEachRow renders the spans table's own rows, for the raw insert.
func jsonEachRow(spans []spanstore.Span) []byte {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, s := range spans {
		r := s.Record
		_ = enc.Encode(map[string]any{
			"record_id": r.RecordID, "ts_start": r.TSStart.UTC().Format("2006-01-02 15:04:05.000000000"), "ts_end": r.TSEnd.UTC().Format("2006-01-02 15:04:05.000000000"),
			"latency_us": r.Latency().Microseconds(), "actor_id": r.Actor.ID, "actor_type": r.Actor.Type, "on_behalf_of": r.Actor.OnBehalfOf,
			"tool_name": r.Tool.Name, "tool_server": r.Tool.Server, "tool_version": r.Tool.Version, "tool_group": r.Tool.Group,
			"mcp_method": r.MCP.Method, "mcp_session_id": r.MCP.SessionID, "mcp_request_id": r.MCP.RequestID, "mcp_transport": r.MCP.Transport,
			"trace_id": r.Trace.TraceID, "span_id": r.Trace.SpanID, "parent_span_id": r.Trace.ParentSpanID, "scope_grants": r.ScopeGrants,
			"policy_decision": r.Policy.Decision, "policy_rule": r.Policy.Rule, "policy_reason": r.Policy.Reason,
			"outcome_status": r.Outcome.Status, "error_code": r.Outcome.ErrorCode, "error_message": r.Outcome.ErrorMessage,
			"cost_amount": r.Cost.Amount, "cost_currency": r.Cost.Currency,
			"tokens_in": r.Cost.TokensIn, "tokens_out": r.Cost.TokensOut, "workflow_id": r.WorkflowID, "plan_id": r.PlanID,
			"region": r.Region, "data_class": r.DataClass, "attributes": r.Attributes, "ingested_by": r.IngestedBy,
			"log_origin": s.LogOrigin, "leaf_index": s.LeafIndex,
		})
	}
	return []byte(b.String())
}

// rawInsert hands the rows to the engine directly: no client, no shim.
func rawInsert(ctx context.Context, eng *chdb.Engine, path string, rows []byte) error {
	if err := os.WriteFile(path, rows, 0o600); err != nil {
		return err
	}
	_, err := eng.Query(ctx, chdb.Statement{Text: []byte("INSERT INTO spans_raw FROM INFILE '" + path + "' FORMAT JSONEachRow"), Format: "TSV"})
	return err
}

// otelInsert writes the same calls as the contrib exporter would: MCP and
// GenAI semantic-convention attributes on an OTel span.
func otelInsert(ctx context.Context, conn driver.Conn, spans []spanstore.Span) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO otel_traces")
	if err != nil {
		return err
	}
	for _, s := range spans {
		r := s.Record
		attrs := map[string]string{
			"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": r.Tool.Name, "mcp.method.name": r.MCP.Method,
			"mcp.session.id": r.MCP.SessionID, "jsonrpc.request.id": r.MCP.RequestID, "network.transport": r.MCP.Transport,
			"actor.id": r.Actor.ID, "actor.type": r.Actor.Type, "actor.on_behalf_of": r.Actor.OnBehalfOf,
			"scope.grants": strings.Join(r.ScopeGrants, ","), "policy.decision": r.Policy.Decision, "policy.rule": r.Policy.Rule,
			"outcome.status": r.Outcome.Status, "error.type": r.Outcome.ErrorCode, "args.sha256": r.ArgsSHA256, "result.sha256": r.ResultSHA256,
			"cost.amount": fmt.Sprint(r.Cost.Amount), "cost.currency": r.Cost.Currency, "gen_ai.usage.input_tokens": fmt.Sprint(r.Cost.TokensIn),
			"gen_ai.usage.output_tokens": fmt.Sprint(r.Cost.TokensOut), "workflow.id": r.WorkflowID, "plan.id": r.PlanID, "cloud.region": r.Region,
			"data.class": r.DataClass, "record.id": r.RecordID, "proofline.ingested_by": r.IngestedBy, "proofline.log_origin": s.LogOrigin,
			"proofline.leaf_index": fmt.Sprint(s.LeafIndex), "tool.group": r.Tool.Group, "tool.version": r.Tool.Version,
		}
		for k, v := range r.Attributes {
			attrs[k] = v
		}
		status := "Ok"
		if r.Outcome.Status != "ok" {
			status = "Error"
		}
		err := b.Append(r.TSStart.UTC(), r.Trace.TraceID, r.Trace.SpanID, r.Trace.ParentSpanID, "", "tools/call "+r.Tool.Name, "Client", r.Tool.Server,
			map[string]string{"service.name": r.Tool.Server}, "proofline", "1", attrs, uint64(r.Latency().Nanoseconds()), status, r.Outcome.ErrorMessage,
			[]time.Time{}, []string{}, []map[string]string{}, []string{}, []string{}, []string{}, []map[string]string{})
		if err != nil {
			return err
		}
	}
	return b.Send()
}

func render(n, chunk int, bPL, bRollup, bOT float64, extra []string, tPL, tRaw, tOTel time.Duration, lat, latExact []time.Duration) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## Span store (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Command: `go run ./bench/spans -spans %d -batch %d -queries %d`  \nMachine: %s, %d CPUs, %s; embedded engine (chDB 26.5.3) through clickhouse-go/v2\n\n", n, chunk, len(lat), host, runtime.NumCPU(), runtime.Version())
	b.WriteString("| table | bytes per span on disk (after OPTIMIZE FINAL) |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| proofline `spans` | %.1f |\n| proofline rollups and other tables (%s), per span | %.2f |\n", bPL, "`"+strings.Join(extra, "`, `")+"`", bRollup)
	fmt.Fprintf(&b, "| contrib exporter `otel_traces` (same calls as MCP/GenAI span attributes) | %.1f |\n", bOT)
	fmt.Fprintf(&b, "| ratio proofline (spans + rollups) / otel_traces | %.0f%% (target ≤ 50%%) |\n\n", 100*(bPL+bRollup)/bOT)
	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	b.WriteString("| insert path | spans/s |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| proofline (`Store.Insert`: stored-record lookup, clickhouse-go batch → HTTP shim → engine, rollup view) | %.0f |\n", rate(tPL))
	fmt.Fprintf(&b, "| raw engine insert of the same rows (JSONEachRow file, no client, no view) | %.0f |\n", rate(tRaw))
	fmt.Fprintf(&b, "| otel_traces via clickhouse-go (context) | %.0f |\n", rate(tOTel))
	fmt.Fprintf(&b, "| ratio proofline / raw | %.0f%% |\n\n", 100*rate(tPL)/rate(tRaw))
	q := func(l []time.Duration, p int) time.Duration {
		return l[min(len(l)-1, len(l)*p/100)].Round(100 * time.Microsecond)
	}
	fmt.Fprintf(&b, "Latency KPI (`GET /v1/kpi/latency?by=tool`, 49 h window) over %d spans, %d runs each (target p95 < 100 ms at 10M spans):\n\n", n, len(lat))
	b.WriteString("| query | p50 | p95 |\n| --- | ---: | ---: |\n")
	fmt.Fprintf(&b, "| default: rollups + edge seconds from spans (quantiles within 1%%) | %s | %s |\n", q(lat, 50), q(lat, 95))
	fmt.Fprintf(&b, "| `exact=true`: quantileExact over spans FINAL | %s | %s |\n", q(latExact, 50), q(latExact, 95))
	return b.String()
}

// kpiTiming is one KPI call's query times, sorted.
type kpiTiming struct {
	name, api string
	// first is the kind's first query, on the engine's cold caches (0
	// when not taken apart); times are the runs after it.
	first time.Duration
	times []time.Duration
}

// timeKPIs times every KPI the API serves, as its handler calls the
// store, over the spans' whole range ending now: each run queries times.
func timeKPIs(ctx context.Context, st *spanstore.Store, now time.Time, sh shape, runs int) ([]kpiTiming, error) {
	var slos []spanstore.SLO
	for g := 0; g < min(5, sh.tools); g++ {
		slos = append(slos, spanstore.SLO{Group: fmt.Sprintf("group-%d", g), Target: 0.99, LatencyMs: 500})
	}
	// As serve does before its span writer starts: the SLO rollup counts
	// against these objectives (the first time, a refill from the spans).
	t0 := time.Now()
	if err := st.SyncObjectives(ctx, slos); err != nil {
		return nil, err
	}
	refill := kpiTiming{name: "SLO rollup sync (a refill from the spans when the objectives changed; once, at start)", api: "serve --slo", times: []time.Duration{time.Since(t0)}}
	// As serve's span role does every minute: seal the plans of the
	// finished hours (the first time, every one of them).
	t0 = time.Now()
	if err := st.SealPlans(ctx); err != nil {
		return nil, err
	}
	seal := kpiTiming{name: "plan seal (every finished hour's plans, as at a first start; then an hour's once an hour)", api: "serve", times: []time.Duration{time.Since(t0)}}
	week := now.Add(-7 * 24 * time.Hour)
	hourly, err := spanstore.AlignSeries(week, now, time.Hour)
	if err != nil {
		return nil, err
	}
	daily, err := spanstore.AlignSeries(now.Add(-28*24*time.Hour), now, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cost := spanstore.CostConfig{Currency: "USD", MonthlyCap: 50_000}
	kinds := []struct {
		name, api string
		f         func() error
	}{
		{"latency, 7 days (rollups)", "/v1/kpi/latency?by=tool&window=7d", func() error {
			_, err := st.Latency(ctx, spanstore.LatencyQuery{By: "tool", From: week, To: now})
			return err
		}},
		{"latency series, 7 days by hour", "/v1/kpi/latency?by=tool&from=…&step=1h", func() error {
			_, err := st.LatencySeries(ctx, "tool", hourly, false)
			return err
		}},
		{"error budget (5 SLOs, all windows)", "/v1/kpi/errorbudget", func() error {
			_, err := st.ErrorBudget(ctx, slos, now)
			return err
		}},
		{"burn series, 7 days by hour", "/v1/kpi/errorbudget?from=…&step=1h", func() error {
			_, err := st.BurnSeries(ctx, slos, hourly)
			return err
		}},
		{"cost (month, projection, anomalies)", "/v1/kpi/cost", func() error {
			_, err := st.Cost(ctx, cost, now)
			return err
		}},
		{"cost series, 28 days by day", "/v1/kpi/cost?step=1d", func() error {
			_, err := st.CostSeries(ctx, "USD", daily)
			return err
		}},
		{"failed plans, 28 days", "/v1/kpi/plans", func() error {
			_, err := st.Plans(ctx, now.Add(-28*24*time.Hour), now)
			return err
		}},
		{"plans series, 28 days by day", "/v1/kpi/plans?step=1d", func() error {
			_, err := st.PlanSeries(ctx, daily)
			return err
		}},
		{"onboarding", "/v1/kpi/onboarding", func() error {
			_, err := st.Onboarding(ctx)
			return err
		}},
		{"spans, first page", "/v1/spans?limit=100", func() error {
			_, err := st.Spans(ctx, spanstore.SpanFilter{Limit: 100})
			return err
		}},
		{"spans of one tool, first page", "/v1/spans?server=mcp-1&tool=tool-01&limit=100", func() error {
			_, err := st.Spans(ctx, spanstore.SpanFilter{Server: "mcp-1", Tool: "tool-01", Limit: 100})
			return err
		}},
	}
	// The first query of a kind reads its columns from disk into the
	// engine's caches; a console polling a KPI asks with them warm. It is
	// reported apart, so that p95 is the steady state's. Then the kinds
	// take turns, run after run: the engine's own background work in a
	// process's first seconds (and any merge) falls on every kind alike,
	// not on whichever came first.
	timed := make([]kpiTiming, len(kinds))
	for i, k := range kinds {
		timed[i] = kpiTiming{name: k.name, api: k.api}
		t0 := time.Now()
		if err := k.f(); err != nil {
			return nil, fmt.Errorf("%s: %w", k.name, err)
		}
		timed[i].first = time.Since(t0)
	}
	for range runs {
		for i, k := range kinds {
			t0 := time.Now()
			if err := k.f(); err != nil {
				return nil, fmt.Errorf("%s: %w", k.name, err)
			}
			timed[i].times = append(timed[i].times, time.Since(t0))
		}
	}
	out := []kpiTiming{refill, seal}
	for _, kt := range timed {
		slices.Sort(kt.times)
		fmt.Fprintf(os.Stderr, "%s: p50 %s\n", kt.name, kt.times[len(kt.times)/2])
		out = append(out, kt)
	}
	return out, nil
}

func renderKPIs(n, chunk int, sh shape, kpis []kpiTiming) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "### KPI query times (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Command: `go run ./bench/spans -spans %d -batch %d -days %d -tools %d -servers %d -queries %d`  \nMachine: %s, %d CPUs, %s; %d spans over %d days ending now, %d tools on %d servers, the store's calls as the API handlers make them\n\n",
		n, chunk, sh.days, sh.tools, sh.servers, len(kpis[len(kpis)-1].times), host, runtime.NumCPU(), runtime.Version(), n, sh.days, sh.tools, sh.servers)
	b.WriteString("| KPI | API | first query | p50 | p95 |\n| --- | --- | ---: | ---: | ---: |\n")
	for _, k := range kpis {
		q := func(p int) time.Duration {
			return k.times[min(len(k.times)-1, len(k.times)*p/100)].Round(100 * time.Microsecond)
		}
		first := "–"
		if k.first > 0 {
			first = k.first.Round(100 * time.Microsecond).String()
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s |\n", k.name, k.api, first, q(50), q(95))
	}
	return b.String()
}
