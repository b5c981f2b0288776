// Package spanstore keeps every call record's span in ClickHouse and
// answers the SRE questions asked of them. All of it goes through
// clickhouse-go/v2: against ClickHouse servers with a DSN, or against the
// engine embedded in-process (query/chdb) by default — one code path.
package spanstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/proofline/proofline/query/chdb"
	"github.com/proofline/proofline/schemas"
)

// Config says which ClickHouse to use and how to shape the schema.
type Config struct {
	// DSN of a ClickHouse server or cluster (clickhouse://user:pass@host:9000/db
	// or http(s)://...). Empty uses the embedded engine under DataDir.
	DSN string
	// DataDir holds the embedded engine's data (DataDir/clickhouse).
	DataDir string
	// ChDBLib is libchdb.so for the embedded engine (default: CHDB_LIB_PATH,
	// then the set-up command's install path).
	ChDBLib string
	// RetentionDays is the spans' TTL (default 90).
	RetentionDays int
	// Cluster, when set, makes the DDL ON CLUSTER with replicated engines.
	Cluster string
	// MaxPartitionsPerInsert bounds the days (partitions) one INSERT
	// touches (default 100, ClickHouse's max_partitions_per_insert_block).
	MaxPartitionsPerInsert int
	// PlanMaxDuration is the longest a plan (the calls sharing a
	// plan_id) is taken to last, a whole number of hours (default 2h, at
	// most a week): the plans KPI looks that far before a window for a
	// plan's first call, and the plans of an hour are sealed (counted
	// once, for good) that long and half an hour after it. Calls of a
	// plan made later than that after its first are not counted right:
	// they may count as a plan of their own, or be left out.
	PlanMaxDuration time.Duration
	Logger          *slog.Logger
}

// Validate checks the configuration without connecting, so that a
// mistake is reported before any engine starts. Each error names the
// field.
func (c Config) Validate() error {
	var errs []error
	if c.DSN != "" {
		if _, err := clickhouse.ParseDSN(c.DSN); err != nil {
			errs = append(errs, fmt.Errorf("DSN: %w", err))
		}
	} else if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir: required for the embedded engine (or set DSN)"))
	}
	if c.RetentionDays < 0 || c.RetentionDays > maxRetentionDays {
		errs = append(errs, fmt.Errorf("RetentionDays: %d, want 1 to %d", c.RetentionDays, maxRetentionDays))
	}
	if c.Cluster != "" && !identRE.MatchString(c.Cluster) {
		errs = append(errs, fmt.Errorf("Cluster: %q is not an identifier", c.Cluster))
	}
	if c.PlanMaxDuration < 0 || c.PlanMaxDuration > maxPlanDuration || c.PlanMaxDuration%time.Hour != 0 {
		errs = append(errs, fmt.Errorf("PlanMaxDuration: %v, want a whole number of hours from 1h to %v", c.PlanMaxDuration, maxPlanDuration))
	}
	if c.MaxPartitionsPerInsert < 0 {
		errs = append(errs, fmt.Errorf("MaxPartitionsPerInsert: %d is negative", c.MaxPartitionsPerInsert))
	}
	return errors.Join(errs...)
}

// maxRetentionDays is a hundred years: beyond DateTime's range anyway.
const maxRetentionDays = 36500

// DefaultPlanMaxDuration is Config.PlanMaxDuration's default. Agents'
// plans take seconds to minutes; the bound sets what the plans KPI
// groups at each query (the unsealed plans: the bound and another half
// hour to an hour and a half), so a longer one costs query time: at 10M
// spans a week, 2h keeps the plans KPI's p95 at 111-129 ms where
// grouping 26 hours took 375-588 ms (bench/RESULTS.md).
const DefaultPlanMaxDuration = 2 * time.Hour

// maxPlanDuration is the longest PlanMaxDuration: a seal groups a week
// of plans at a time (planSealChunk).
const maxPlanDuration = 7 * 24 * time.Hour

// Store is an open span store.
type Store struct {
	cfg Config
	// table is what queries read and inserts write: spans, or on a
	// cluster the Distributed spans_all over every shard.
	table string
	// catalogTable is the tool catalog's table (tool_catalog, or its
	// Distributed table on a cluster).
	catalogTable string
	// tables fills {{spans}}, {{latency_rollup_*}}, {{onboarding}}, {{cost_rollup}}, {{cost_tool_rollup}}, {{cost_tool_hourly_rollup}}, {{cost_workflow_rollup}}, {{plans_rollup}}, {{recent}} and {{failures_rollup}} in queries with the
	// tables of this mode (local, or Distributed on a cluster).
	tables *strings.Replacer
	// sealMu makes SealPlans one at a time.
	sealMu sync.Mutex
	// clock is SealPlans' now (nil: time.Now), set by tests whose calls
	// are timed from a fixed now.
	clock func() time.Time
	// mu guards maxLeaf: one past the highest leaf index this store knows
	// to be in the table (from the table itself on first use, then from
	// its own inserts). Spans at or above it cannot be stored yet.
	mu           sync.Mutex
	maxLeaf      uint64
	maxLeafKnown bool
	// objMu guards objectives: the latency objective (µs) per SLO group
	// the SLO rollup counts against, once SyncObjectives made it so.
	objMu      sync.Mutex
	objectives map[string]uint64
	conn       driver.Conn
	engine     *chdb.Engine
	log        *slog.Logger
}

// Open prepares the connection to ClickHouse (or starts the embedded
// engine). It does not wait for a ClickHouse server: one that is down at
// start must not keep ingest and proofs from running, so the span
// writer's role calls Ping and Migrate, and retries them, instead.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.RetentionDays == 0 {
		cfg.RetentionDays = 90
	}
	if cfg.MaxPartitionsPerInsert == 0 {
		cfg.MaxPartitionsPerInsert = 100
	}
	if cfg.PlanMaxDuration == 0 {
		cfg.PlanMaxDuration = DefaultPlanMaxDuration
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("spanstore: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Store{cfg: cfg, log: cfg.Logger, table: "spans"}
	suffix := ""
	if cfg.Cluster != "" {
		s.table, suffix = "spans_all", "_all"
	}
	s.catalogTable = "tool_catalog" + suffix
	s.tables = strings.NewReplacer("{{spans}}", s.table, "{{catalog}}", s.catalogTable,
		"{{latency_rollup_1m}}", "spans_latency_1m"+suffix, "{{latency_rollup_1h}}", "spans_latency_1h"+suffix,
		"{{onboarding}}", "tool_onboarding"+suffix, "{{cost_rollup}}", "spans_cost_1m"+suffix,
		"{{plans_rollup}}", "spans_plans_1h"+suffix, "{{cost_tool_rollup}}", "spans_cost_tool_1m"+suffix,
		"{{cost_workflow_rollup}}", "spans_cost_workflow_1h"+suffix, "{{cost_tool_hourly_rollup}}", "spans_cost_tool_1h"+suffix,
		"{{recent}}", "spans_recent"+suffix, "{{latest}}", "spans_latest"+suffix, "{{failures_rollup}}", "spans_failures_1h"+suffix)
	var opts *clickhouse.Options
	if cfg.DSN != "" {
		o, err := clickhouse.ParseDSN(cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("--clickhouse DSN: %w", err)
		}
		opts = o
	} else {
		if cfg.DataDir == "" {
			return nil, errors.New("spanstore: DataDir or DSN is required")
		}
		eng, err := chdb.Open(ctx, chdb.Options{LibPath: cfg.ChDBLib, DataDir: filepath.Join(cfg.DataDir, "clickhouse")})
		if err != nil {
			return nil, err
		}
		s.engine = eng
		opts = &clickhouse.Options{
			Protocol:      clickhouse.HTTP,
			Addr:          []string{"chdb.embedded:8123"},
			TransportFunc: func(*http.Transport) (http.RoundTripper, error) { return eng.Transport(), nil },
			// The engine compiles an expression to machine code (LLVM)
			// once it has seen it a few times, inside the query that
			// does: at 10M spans the 2nd and 4th plans KPI of a new
			// process took 130–210 and 200–380 ms instead of 75–90, and
			// the compiled code bought nothing measurable afterwards
			// (bench/RESULTS 2026-12-03 13:24). A ClickHouse server
			// (DSN) keeps the settings its operator chose.
			Settings: clickhouse.Settings{"compile_expressions": 0, "compile_aggregate_expressions": 0, "compile_sort_description": 0},
		}
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	s.conn = conn
	return s, nil
}

// Ping checks that ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse ping: %w", err)
	}
	return nil
}

// Close releases the connection and the embedded engine.
func (s *Store) Close() error {
	var errs []error
	if s.conn != nil {
		errs = append(errs, s.conn.Close())
	}
	if s.engine != nil {
		errs = append(errs, s.engine.Close())
	}
	return errors.Join(errs...)
}

// Span is one call record with its evidence pointer.
type Span struct {
	Record    *schemas.CallRecord
	LogOrigin string
	LeafIndex uint64
	// MaybeStored says the span may have been inserted before, whatever
	// its leaf index: LogSink sets it for a batch sent again after a
	// failed insert, which ClickHouse may partly hold.
	MaybeStored bool
}

// Insert writes the spans the table does not hold yet. It returns only
// when ClickHouse has them, so a consumer may acknowledge its messages
// afterwards; spans ClickHouse refuses make it fail (see Write, which sets
// them apart instead).
func (s *Store) Insert(ctx context.Context, spans []Span) error {
	rejected, err := s.Write(ctx, spans)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rejected {
		errs = append(errs, fmt.Errorf("span %s: %w", r.Span.Record.RecordID, r.Err))
	}
	return errors.Join(errs...)
}

// Rejection is a span ClickHouse refused, with its reason.
type Rejection struct {
	Span Span
	// Err is ClickHouse's error (isRejected holds for it).
	Err error
}

// Write inserts the spans the table does not hold yet and returns those
// ClickHouse refuses, each with ClickHouse's reason; every other span is
// stored when it returns without error. An error means nothing can be
// said about the batch (ClickHouse unreachable, overloaded, ...): retry
// all of it later.
//
// Why a batch is not one INSERT: the spans table is partitioned by day,
// and ClickHouse refuses a block that touches more than
// max_partitions_per_insert_block (100) partitions, so one request with
// records over many days would fail whole, forever. Write groups the spans
// by day into blocks of at most MaxPartitionsPerInsert days, and a block
// ClickHouse refuses for its data is split in halves until the spans it
// cannot take are isolated: the others are stored after a few more
// inserts, and nothing behind a bad record waits for it.
//
// Skipping stored records is what keeps the latency rollup exact: its
// materialized view counts every inserted row, before ReplacingMergeTree
// collapses duplicates, and a record does come again — redelivered after
// a crash between insert and ack, or published anew by a producer after
// JetStream's duplicate window. (Two writers inserting the same record at
// the same instant can still both insert it; the spans table collapses it,
// the rollup would count it twice.)
func (s *Store) Write(ctx context.Context, spans []Span) ([]Rejection, error) {
	if len(spans) == 0 {
		return nil, nil
	}
	// Catalog records are what servers offered, not calls: they go to
	// the tool catalog.
	var entries []Span
	calls := spans[:0:0]
	for _, sp := range spans {
		if sp.Record.IsCatalog() {
			entries = append(entries, sp)
		} else {
			calls = append(calls, sp)
		}
	}
	var rejected []Rejection
	if len(entries) > 0 {
		r, err := s.writeCatalog(ctx, entries)
		if err != nil {
			return nil, err
		}
		rejected = append(rejected, r...)
	}
	if spans = calls; len(spans) == 0 {
		return rejected, nil
	}
	have, err := s.storedAmong(ctx, spans)
	if err != nil {
		return nil, err
	}
	fresh := make([]Span, 0, len(spans))
	for _, sp := range spans {
		if !have[sp.Record.RecordID] {
			fresh = append(fresh, sp)
			// A record twice in one batch is inserted once.
			have[sp.Record.RecordID] = true
		}
	}
	for _, block := range partitionBlocks(fresh, s.cfg.MaxPartitionsPerInsert) {
		r, err := s.insertIsolating(ctx, block)
		if err != nil {
			return nil, err
		}
		rejected = append(rejected, r...)
	}
	return rejected, nil
}

// partitionBlocks orders spans by their partition (the UTC day of
// ts_start, as the table's PARTITION BY) and cuts them into blocks that
// each touch at most maxDays partitions.
func partitionBlocks(spans []Span, maxDays int) [][]Span {
	if len(spans) == 0 {
		return nil
	}
	day := func(sp Span) int64 { return sp.Record.TSStart.UTC().Unix() / 86400 }
	sorted := slices.Clone(spans)
	slices.SortStableFunc(sorted, func(a, b Span) int { return cmp.Compare(day(a), day(b)) })
	var blocks [][]Span
	start, days := 0, 1
	for i := 1; i < len(sorted); i++ {
		if day(sorted[i]) == day(sorted[i-1]) {
			continue
		}
		if days == maxDays {
			blocks = append(blocks, sorted[start:i])
			start, days = i, 0
		}
		days++
	}
	return append(blocks, sorted[start:])
}

// insertIsolating inserts spans as one block; when ClickHouse refuses the
// block for its data, it bisects until the refused spans are single and
// returns those. Any other error ends it: the caller retries everything.
func (s *Store) insertIsolating(ctx context.Context, spans []Span) ([]Rejection, error) {
	err := s.insertBlock(ctx, spans)
	switch {
	case err == nil:
		return nil, nil
	case !isRejected(err):
		return nil, err
	case len(spans) == 1:
		s.log.WarnContext(ctx, "span rejected by ClickHouse", "record_id", spans[0].Record.RecordID, "err", err)
		return []Rejection{{Span: spans[0], Err: err}}, nil
	}
	half := len(spans) / 2
	left, err := s.insertIsolating(ctx, spans[:half])
	if err != nil {
		return nil, err
	}
	right, err := s.insertIsolating(ctx, spans[half:])
	if err != nil {
		return nil, err
	}
	return append(left, right...), nil
}

// insertBlock writes spans in one INSERT.
func (s *Store) insertBlock(ctx context.Context, spans []Span) error {
	b, err := s.conn.PrepareBatch(ctx, `INSERT INTO `+s.table)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	for _, sp := range spans {
		r := sp.Record
		var mcp schemas.MCP
		if r.MCP != nil {
			mcp = *r.MCP
		}
		var tr schemas.Trace
		if r.Trace != nil {
			tr = *r.Trace
		}
		var cost schemas.Cost
		if r.Cost != nil {
			cost = *r.Cost
		}
		grants := r.ScopeGrants
		if grants == nil {
			grants = []string{}
		}
		attrs := r.Attributes
		if attrs == nil {
			attrs = map[string]string{}
		}
		elevScopes, approver := []string{}, ""
		if e := r.Elevation; e != nil {
			elevScopes, approver = e.Scopes, e.Approver
		}
		err := b.Append(
			r.RecordID, r.TSStart.UTC(), r.TSEnd.UTC(), uint64(r.Latency().Microseconds()),
			r.Actor.ID, r.Actor.Type, r.Actor.OnBehalfOf,
			r.Tool.Name, r.Tool.Server, r.Tool.Version, r.Tool.Group,
			mcp.Method, mcp.SessionID, mcp.RequestID, mcp.Transport,
			tr.TraceID, tr.SpanID, tr.ParentSpanID,
			grants,
			r.Policy.Decision, r.Policy.Rule, r.Policy.Reason,
			r.Outcome.Status, r.Outcome.ErrorCode, r.Outcome.ErrorMessage,
			cost.Amount, cost.Currency, uint64(cost.TokensIn), uint64(cost.TokensOut),
			r.WorkflowID, r.PlanID, r.Region, r.DataClass,
			attrs, r.IngestedBy, sp.LogOrigin, sp.LeafIndex,
			elevScopes, approver,
		)
		if err != nil {
			_ = b.Abort()
			// The client refused the row's values: the row, not the
			// server, is the problem.
			return fmt.Errorf("append span %s: %w: %w", r.RecordID, ErrRejected, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d spans: %w", len(spans), err)
	}
	s.mu.Lock()
	for _, sp := range spans {
		s.maxLeaf = max(s.maxLeaf, sp.LeafIndex+1)
	}
	s.mu.Unlock()
	return nil
}

// storedAmong returns the ids of spans already in the table, looking up
// only those that can be: a span whose leaf index is above every leaf
// stored so far was never inserted, unless it is MaybeStored. New records
// come with new, growing leaf indices, so in steady state nothing is looked
// up; redelivered and republished records carry a leaf already passed or
// are marked, and are.
func (s *Store) storedAmong(ctx context.Context, spans []Span) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.maxLeafKnown {
		// Once per process: the highest leaf stored by anyone before.
		var n uint64
		if err := s.queryRow(ctx, `SELECT count(), max(leaf_index) + 1 FROM {{spans}}`).Scan(&n, &s.maxLeaf); err != nil {
			return nil, fmt.Errorf("find the highest stored leaf: %w", err)
		}
		if n == 0 {
			s.maxLeaf = 0
		}
		s.maxLeafKnown = true
	}
	var maybe []Span
	for _, sp := range spans {
		if sp.LeafIndex < s.maxLeaf || sp.MaybeStored {
			maybe = append(maybe, sp)
		}
	}
	if len(maybe) == 0 {
		return map[string]bool{}, nil
	}
	return s.stored(ctx, maybe)
}

// storedChunk bounds the keys of one lookup: they travel as a query
// parameter, which a server's HTTP interface takes in the URL (1 MiB).
const storedChunk = 2000

// stored returns the ids of spans already in the table. It looks them up
// by the full sort key, so the primary index narrows the read to the
// granules that could hold them.
func (s *Store) stored(ctx context.Context, spans []Span) (map[string]bool, error) {
	have := map[string]bool{}
	for start := 0; start < len(spans); start += storedChunk {
		chunk := spans[start:min(start+storedChunk, len(spans))]
		var keys strings.Builder
		keys.WriteByte('[')
		for i, sp := range chunk {
			if i > 0 {
				keys.WriteByte(',')
			}
			r := sp.Record
			keys.WriteByte('(')
			keys.WriteString(quoteLiteral(r.Tool.Group))
			keys.WriteByte(',')
			keys.WriteString(quoteLiteral(r.Tool.Name))
			keys.WriteString(",'")
			keys.WriteString(r.TSStart.UTC().Format(paramTime))
			keys.WriteString("',")
			keys.WriteString(quoteLiteral(r.RecordID))
			keys.WriteByte(')')
		}
		keys.WriteByte(']')
		qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"keys": keys.String()}))
		rows, err := s.query(qctx, `SELECT record_id FROM {{spans}}
			WHERE (tool_group, tool_name, ts_start, record_id) IN {keys:Array(Tuple(String, String, DateTime64(9, 'UTC'), String))}`)
		if err != nil {
			return nil, fmt.Errorf("look up stored spans: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			have[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("look up stored spans: %w", err)
		}
	}
	return have, nil
}

// quoteLiteral writes s as a ClickHouse quoted string literal, the text
// form of a String inside an Array or Tuple query parameter. It is the
// parameter's serialization, not SQL: the value is parsed as data by the
// server and never becomes part of the statement.
func quoteLiteral(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// LatencyRow is the latency of one tool or tool group over a window.
type LatencyRow struct {
	// Server is the tool's server (by=tool); a tool is its server and
	// name, so one name on two servers is two rows.
	Server string  `json:"server,omitempty"`
	Key    string  `json:"key"`
	Calls  uint64  `json:"calls"`
	P50ms  float64 `json:"p50_ms"`
	P95ms  float64 `json:"p95_ms"`
	P99ms  float64 `json:"p99_ms"`
}

// latencyBucketBase is the growth factor of the latency histogram's
// buckets: a latency of x µs is in bucket round(ln x / ln 1.02).
const latencyBucketBase = 1.02

// latencyBucketSQL is that bucket in SQL, for spans read directly and, as
// the migrations' {{latency_bucket}}, for the rollups' views and backfill;
// a rollup built with another base would need a new migration.
const latencyBucketSQL = `toUInt16(round(log(greatest(latency_us, 1)) / log(1.02)))`

// LatencyAccuracy is the relative accuracy of the quantiles read from the
// histogram: every latency in bucket b lies within a factor √1.02 of
// 1.02^b, so a reported p95 is within 1% of the exact one.
const LatencyAccuracy = 0.01

// histogramQuantilesSQL reads the p50, p95 and p99 (µs) off the latency
// histogram h (a sumMap of buckets) holding n calls, in the engine, with
// the rank rule of quantileExact — the element at index ⌊q·n⌋ of the
// sorted latencies — so that a rolled-up answer differs from the exact
// one only by the bucket width: for each q, the value of the first bucket,
// in bucket order, whose running count passes rank min(⌊q·n⌋, n − 1).
// h's buckets must be in key order: every histogram the store keeps or
// sums is a sumMap result, which is (TestStoredHistogramsAreInBucketOrder).
// Sorting each map again (mapSort) was ~20% of the latency series query at
// 10M spans (bench/RESULTS.md). The tests' histogramQuantiles is the same
// rule in Go, the reference this is checked against.
func histogramQuantilesSQL(h, n string) string {
	var qs []string
	for _, q := range []string{"0.5", "0.95", "0.99"} {
		qs = append(qs, fmt.Sprintf("pow(%v, mapKeys(%s)[arrayFirstIndex(c -> c > least(toUInt64(%s * %s), %s - 1), arrayCumSum(mapValues(%s)))])",
			latencyBucketBase, h, q, n, n, h))
	}
	return strings.Join(qs, ", ")
}

// LatencyQuery asks for latency quantiles of calls that started in
// [From, To), per tool or per tool group.
type LatencyQuery struct {
	// By is "tool" or "group".
	By       string
	From, To time.Time
	// Exact computes exact quantiles from every span (quantileExact over
	// the spans table) instead of merging the per-minute rollup. Exact
	// reads are proportional to the number of spans in the window; the
	// rollup's to the number of tool-minutes.
	Exact bool
}

// window is [from, to) cut where the rollups can answer for it:
//
//	[from, mfrom) ∪ [mto, to)   seconds at the edges, from spans
//	[mfrom, hfrom) ∪ [hto, mto) whole minutes, from spans_latency_1m
//	[hfrom, hto)                whole hours, from spans_latency_1h
//
// Empty parts are empty ranges, so every call in [from, to) is counted
// exactly once.
type window struct{ mfrom, mto, hfrom, hto time.Time }

func splitWindow(from, to time.Time) window {
	ceil := func(t time.Time, d time.Duration) time.Time {
		if f := t.Truncate(d); f.Before(t) {
			return f.Add(d)
		}
		return t
	}
	w := window{mfrom: ceil(from, time.Minute), mto: to.Truncate(time.Minute)}
	if !w.mfrom.Before(w.mto) {
		// No whole minute inside: all of it from spans.
		return window{mfrom: to, mto: to, hfrom: to, hto: to}
	}
	w.hfrom, w.hto = ceil(w.mfrom, time.Hour), w.mto.Truncate(time.Hour)
	if !w.hfrom.Before(w.hto) {
		// No whole hour inside: the minutes from the minute rollup.
		w.hfrom, w.hto = w.mto, w.mto
	}
	return w
}

// groupColumns maps the API's "by" to the columns a row is keyed by: a
// tool is its server and name, a group its name (server ”). User text
// never reaches the SQL.
var groupColumns = map[string]struct{ server, key string }{
	"tool":  {"tool_server", "tool_name"},
	"group": {"''", "tool_group"},
}

// ranCalls leaves out calls refused by policy: their latency is the
// hook's, not the tool's (the rollups are filled so too).
const ranCalls = `outcome_status != 'policy_blocked'`

// Latency returns p50/p95/p99 latency per tool or tool group.
//
// By default the window is read from the rollups where they cover it and
// from the spans at its edges (splitWindow), as histograms of the same
// buckets summed into one: counts are exact, quantiles within
// LatencyAccuracy. With q.Exact every span of the window is read.
func (s *Store) Latency(ctx context.Context, q LatencyQuery) ([]LatencyRow, error) {
	g, ok := groupColumns[q.By]
	if !ok {
		return nil, fmt.Errorf("by=%q: want tool or group", q.By)
	}
	from, to := q.From.UTC(), q.To.UTC()
	var sql string
	params := clickhouse.Parameters{}
	if q.Exact {
		sql = `SELECT ` + g.server + ` AS srv, ` + g.key + ` AS key, count() AS calls,
			quantileExact(0.5)(latency_us) / 1000 AS p50,
			quantileExact(0.95)(latency_us) / 1000 AS p95,
			quantileExact(0.99)(latency_us) / 1000 AS p99
		FROM {{spans}} FINAL
		WHERE ts_start >= {from:DateTime64(9, 'UTC')} AND ts_start < {to:DateTime64(9, 'UTC')} AND ` + ranCalls + `
		GROUP BY srv, key ORDER BY key, srv`
		timeParams(params, map[string]time.Time{"from": from, "to": to})
	} else {
		w := splitWindow(from, to)
		// The summed histogram's quantiles are read by the engine
		// (histogramQuantilesSQL), as for the series.
		sql = `SELECT srv, key, calls, ` + histogramQuantilesSQL("hist", "calls") + ` FROM (
		SELECT srv, key, sum(n) AS calls, sumMap(h) AS hist
		FROM (
			SELECT ` + g.server + ` AS srv, ` + g.key + ` AS key, sum(calls) AS n, sumMap(latency_hist) AS h
			FROM {{latency_rollup_1h}}
			WHERE hour >= {hfrom:DateTime64(9, 'UTC')} AND hour < {hto:DateTime64(9, 'UTC')}
			GROUP BY srv, key
			UNION ALL
			SELECT ` + g.server + ` AS srv, ` + g.key + ` AS key, sum(calls) AS n, sumMap(latency_hist) AS h
			FROM {{latency_rollup_1m}}
			WHERE (minute >= {mfrom:DateTime64(9, 'UTC')} AND minute < {hfrom:DateTime64(9, 'UTC')})
			   OR (minute >= {hto:DateTime64(9, 'UTC')} AND minute < {mto:DateTime64(9, 'UTC')})
			GROUP BY srv, key
			UNION ALL
			SELECT ` + g.server + ` AS srv, ` + g.key + ` AS key, count() AS n, sumMap(map(` + latencyBucketSQL + `, toUInt64(1))) AS h
			FROM {{spans}} FINAL
			WHERE ((ts_start >= {from:DateTime64(9, 'UTC')} AND ts_start < {mfrom:DateTime64(9, 'UTC')})
			   OR (ts_start >= {mto:DateTime64(9, 'UTC')} AND ts_start < {to:DateTime64(9, 'UTC')})) AND ` + ranCalls + `
			GROUP BY srv, key
		)
		GROUP BY srv, key HAVING calls > 0)
		ORDER BY key, srv`
		timeParams(params, map[string]time.Time{"from": from, "to": to, "mfrom": w.mfrom, "mto": w.mto, "hfrom": w.hfrom, "hto": w.hto})
	}
	rows, err := s.query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), sql)
	if err != nil {
		return nil, fmt.Errorf("latency query: %w", err)
	}
	defer rows.Close()
	var out []LatencyRow
	for rows.Next() {
		var r LatencyRow
		if q.Exact {
			if err := rows.Scan(&r.Server, &r.Key, &r.Calls, &r.P50ms, &r.P95ms, &r.P99ms); err != nil {
				return nil, err
			}
		} else {
			var q50, q95, q99 float64
			if err := rows.Scan(&r.Server, &r.Key, &r.Calls, &q50, &q95, &q99); err != nil {
				return nil, err
			}
			// Whole microseconds: finer digits would only be the
			// bucket's arithmetic, not information.
			r.P50ms, r.P95ms, r.P99ms = math.Round(q50)/1000, math.Round(q95)/1000, math.Round(q99)/1000
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// query and queryRow run a read with {{spans}} naming the table to read:
// the local table, or on a cluster the Distributed one.
func (s *Store) query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	return s.conn.Query(ctx, s.tables.Replace(q), args...)
}

func (s *Store) queryRow(ctx context.Context, q string, args ...any) driver.Row {
	return s.conn.QueryRow(ctx, s.tables.Replace(q), args...)
}
