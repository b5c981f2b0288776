// Package spanstore keeps every call record's span in ClickHouse and
// answers the SRE questions asked of them. All of it goes through
// clickhouse-go/v2: against ClickHouse servers with a DSN, or against the
// engine embedded in-process (query/chdb) by default — one code path.
package spanstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
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
	Logger  *slog.Logger
}

// Store is an open span store.
type Store struct {
	cfg Config
	// table is what queries read and inserts write: spans, or on a
	// cluster the Distributed spans_all over every shard.
	table  string
	conn   driver.Conn
	engine *chdb.Engine
	log    *slog.Logger
}

// Open connects to ClickHouse (or starts the embedded engine).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.RetentionDays == 0 {
		cfg.RetentionDays = 90
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Store{cfg: cfg, log: cfg.Logger, table: "spans"}
	if cfg.Cluster != "" {
		s.table = "spans_all"
	}
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
		}
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	s.conn = conn
	if err := conn.Ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("clickhouse ping: %w", err)
	}
	return s, nil
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
}

// Insert writes spans in one batch. It returns only when ClickHouse has
// the batch, so a consumer may acknowledge its messages afterwards.
func (s *Store) Insert(ctx context.Context, spans []Span) error {
	if len(spans) == 0 {
		return nil
	}
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
		err := b.Append(
			r.RecordID, r.TSStart.UTC(), r.TSEnd.UTC(), uint64(r.Latency().Microseconds()),
			r.Actor.ID, r.Actor.Type, r.Actor.OnBehalfOf,
			r.Tool.Name, r.Tool.Server, r.Tool.Version, r.Tool.Group,
			mcp.Method, mcp.SessionID, mcp.RequestID, mcp.Transport,
			tr.TraceID, tr.SpanID, tr.ParentSpanID,
			grants,
			r.Policy.Decision, r.Policy.Rule, r.Policy.Reason,
			r.Outcome.Status, r.Outcome.ErrorCode, r.Outcome.ErrorMessage,
			r.ArgsSHA256, r.ResultSHA256,
			cost.Amount, cost.Currency, uint64(cost.TokensIn), uint64(cost.TokensOut),
			r.WorkflowID, r.PlanID, r.Region, r.DataClass,
			attrs, r.IngestedBy, sp.LogOrigin, sp.LeafIndex,
		)
		if err != nil {
			_ = b.Abort()
			return fmt.Errorf("append span %s: %w", r.RecordID, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d spans: %w", len(spans), err)
	}
	return nil
}

// LatencyRow is the latency of one tool or tool group over a window.
type LatencyRow struct {
	Key   string  `json:"key"`
	Calls uint64  `json:"calls"`
	P50ms float64 `json:"p50_ms"`
	P95ms float64 `json:"p95_ms"`
	P99ms float64 `json:"p99_ms"`
}

// groupColumns maps the API's "by" to a column; user text never reaches
// the SQL.
var groupColumns = map[string]string{"tool": "tool_name", "group": "tool_group"}

// Latency returns p50/p95/p99 latency per tool or tool group for calls
// that started in [from, to). Quantiles are exact, per the SRE report.
func (s *Store) Latency(ctx context.Context, by string, from, to time.Time) ([]LatencyRow, error) {
	col, ok := groupColumns[by]
	if !ok {
		return nil, fmt.Errorf("by=%q: want tool or group", by)
	}
	q := `SELECT ` + col + ` AS key, count() AS calls,
		quantileExact(0.5)(latency_us) / 1000 AS p50,
		quantileExact(0.95)(latency_us) / 1000 AS p95,
		quantileExact(0.99)(latency_us) / 1000 AS p99
	FROM {{spans}} FINAL
	WHERE ts_start >= {from:DateTime64(9, 'UTC')} AND ts_start < {to:DateTime64(9, 'UTC')}
	GROUP BY key ORDER BY key`
	ctx = clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{
		"from": from.UTC().Format("2006-01-02 15:04:05.000000000"),
		"to":   to.UTC().Format("2006-01-02 15:04:05.000000000"),
	}))
	rows, err := s.query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("latency query: %w", err)
	}
	defer rows.Close()
	var out []LatencyRow
	for rows.Next() {
		var r LatencyRow
		if err := rows.Scan(&r.Key, &r.Calls, &r.P50ms, &r.P95ms, &r.P99ms); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// query and queryRow run a read with {{spans}} naming the table to read:
// the local table, or on a cluster the Distributed one.
func (s *Store) query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	return s.conn.Query(ctx, strings.ReplaceAll(q, "{{spans}}", s.table), args...)
}

func (s *Store) queryRow(ctx context.Context, q string, args ...any) driver.Row {
	return s.conn.QueryRow(ctx, strings.ReplaceAll(q, "{{spans}}", s.table), args...)
}
