package spanstore

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/proofline/proofline/schemas"
)

// migration is one versioned DDL file.
type migration struct {
	version    uint32
	name       string
	statements []string
}

// migrationName matches NNNN_name.sql, and NNNN_name.cluster.sql for
// migrations that only apply to a cluster (the Distributed table).
var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)(\.cluster)?\.sql$`)

// migrations reads the embedded DDL and fills its placeholders.
func migrations(vars map[string]string) ([]migration, error) {
	entries, err := fs.ReadDir(schemas.ClickHouseMigrations, "clickhouse")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		if m[3] != "" && vars["cluster"] == "" {
			continue
		}
		v, _ := strconv.ParseUint(m[1], 10, 32)
		raw, err := fs.ReadFile(schemas.ClickHouseMigrations, path.Join("clickhouse", e.Name()))
		if err != nil {
			return nil, err
		}
		text := string(raw)
		for k, val := range vars {
			text = strings.ReplaceAll(text, "{{"+k+"}}", val)
		}
		sts := splitStatements(text)
		for _, st := range sts {
			if strings.Contains(st, "{{") {
				return nil, fmt.Errorf("migration %s has an unfilled placeholder", e.Name())
			}
		}
		out = append(out, migration{version: uint32(v), name: m[2], statements: sts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// splitStatements splits a DDL file on the semicolons that end a line,
// dropping comment lines. The migration files are ours; this is not a SQL
// parser.
func splitStatements(text string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			if s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); s != "" {
				out = append(out, s)
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// DDLVars are the placeholders of the migrations for a configuration.
func DDLVars(cfg Config) (map[string]string, error) {
	vars := map[string]string{
		"retention_days":          strconv.Itoa(cfg.RetentionDays),
		"on_cluster":              "",
		"cluster":                 "",
		"replacing_engine":        "ReplacingMergeTree",
		"aggregating_engine_1m":   "AggregatingMergeTree",
		"aggregating_engine_1h":   "AggregatingMergeTree",
		"spans":                   "spans",
		"latency_rollup_1m":       "spans_latency_1m",
		"latency_rollup_1h":       "spans_latency_1h",
		"catalog_engine":          "ReplacingMergeTree",
		"onboarding_engine":       "AggregatingMergeTree",
		"onboarding":              "tool_onboarding",
		"slo_engine":              "AggregatingMergeTree",
		"cost_engine":             "AggregatingMergeTree",
		"cost_rollup":             "spans_cost_1m",
		"objectives_engine":       "MergeTree",
		"plans_engine":            "AggregatingMergeTree",
		"plans_rollup":            "spans_plans_1h",
		"cost_tool_engine":        "AggregatingMergeTree",
		"cost_tool_rollup":        "spans_cost_tool_1m",
		"cost_workflow_engine":    "AggregatingMergeTree",
		"cost_workflow_rollup":    "spans_cost_workflow_1h",
		"cost_tool_hourly_engine": "AggregatingMergeTree",
		"cost_tool_hourly_rollup": "spans_cost_tool_1h",
		"recent_engine":           "ReplacingMergeTree",
		"recent":                  "spans_recent",
		"latest_engine":           "ReplacingMergeTree(leaf_index)",
		"latest":                  "spans_latest",
		"plans_sealed_engine":     "AggregatingMergeTree",
		"plans_open_engine":       "AggregatingMergeTree",
		"plans_pending_engine":    "MergeTree",
		"plans_state_engine":      "ReplacingMergeTree(updated)",
		"plans_scratch_engine":    "MergeTree",
		"plans_marks_engine":      "MergeTree",
		"plan_calls_engine":       "AggregatingMergeTree",
		"plan_calls":              "plans_calls_1h",
		"failures_engine":         "AggregatingMergeTree",
		"failures_rollup":         "spans_failures_1h",
		"latency_bucket":          latencyBucketSQL,
	}
	if cfg.RetentionDays <= 0 || cfg.RetentionDays > 36500 {
		return nil, fmt.Errorf("retention of %d days: want 1 to 36500", cfg.RetentionDays)
	}
	if cfg.Cluster != "" {
		if !identRE.MatchString(cfg.Cluster) {
			return nil, fmt.Errorf("cluster name %q: want an identifier", cfg.Cluster)
		}
		vars["on_cluster"] = "ON CLUSTER " + cfg.Cluster
		vars["cluster"] = cfg.Cluster
		vars["replacing_engine"] = "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/spans', '{replica}')"
		for _, b := range []string{"1m", "1h"} {
			vars["aggregating_engine_"+b] = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/spans_latency_" + b + "', '{replica}')"
			vars["latency_rollup_"+b] = "spans_latency_" + b + "_all"
		}
		vars["spans"] = "spans_all"
		vars["catalog_engine"] = "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/tool_catalog', '{replica}')"
		vars["onboarding_engine"] = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/tool_onboarding', '{replica}')"
		vars["onboarding"] = "tool_onboarding_all"
		vars["cost_engine"] = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/spans_cost_1m', '{replica}')"
		vars["cost_rollup"] = "spans_cost_1m_all"
		vars["slo_engine"] = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/spans_slo_1m', '{replica}')"
		vars["plans_engine"] = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/spans_plans_1h', '{replica}')"
		vars["plans_rollup"] = "spans_plans_1h_all"
		vars["cost_tool_engine"] = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/spans_cost_tool_1m', '{replica}')"
		vars["cost_tool_rollup"] = "spans_cost_tool_1m_all"
		vars["cost_workflow_engine"] = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/spans_cost_workflow_1h', '{replica}')"
		vars["cost_workflow_rollup"] = "spans_cost_workflow_1h_all"
		vars["cost_tool_hourly_engine"] = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/spans_cost_tool_1h', '{replica}')"
		vars["cost_tool_hourly_rollup"] = "spans_cost_tool_1h_all"
		vars["recent_engine"] = "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/spans_recent', '{replica}')"
		vars["recent"] = "spans_recent_all"
		vars["latest_engine"] = "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/spans_latest', '{replica}', leaf_index)"
		vars["latest"] = "spans_latest_all"
		vars["plan_calls"] = "plans_calls_1h_all"
		vars["failures_rollup"] = "spans_failures_1h_all"
		for _, t := range []struct{ v, engine, table string }{
			{"plans_sealed_engine", "ReplicatedAggregatingMergeTree", "plans_sealed_1h"},
			{"plans_open_engine", "ReplicatedAggregatingMergeTree", "plans_open_1h"},
			{"plans_pending_engine", "ReplicatedMergeTree", "plans_pending"},
			{"plans_state_engine", "ReplicatedReplacingMergeTree", "plans_seal_state"},
			{"plans_scratch_engine", "ReplicatedMergeTree", "plans_seal_scratch"},
			{"plans_marks_engine", "ReplicatedMergeTree", "plans_seal_marks"},
			{"plan_calls_engine", "ReplicatedAggregatingMergeTree", "plans_calls_1h"},
			{"failures_engine", "ReplicatedAggregatingMergeTree", "spans_failures_1h"},
		} {
			args := "'/clickhouse/tables/{shard}/{database}/" + t.table + "', '{replica}'"
			if t.table == "plans_seal_state" {
				args += ", updated"
			}
			vars[t.v] = t.engine + "(" + args + ")"
		}
		vars["objectives_engine"] = "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/slo_objectives', '{replica}')"
	}
	return vars, nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Migrate applies every migration not yet recorded in
// proofline_schema_migrations, in order. Each statement is idempotent (IF
// NOT EXISTS), so a crash between a statement and its record is repaired
// by running Migrate again.
func (s *Store) Migrate(ctx context.Context) error {
	vars, err := DDLVars(s.cfg)
	if err != nil {
		return err
	}
	ms, err := migrations(vars)
	if err != nil {
		return err
	}
	if err := s.conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS proofline_schema_migrations %s
		(version UInt32, name String, applied_at DateTime64(3, 'UTC'))
		ENGINE = %s ORDER BY version`, vars["on_cluster"], migrationsEngine(s.cfg))); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	applied := map[uint32]bool{}
	rows, err := s.conn.Query(ctx, `SELECT version FROM proofline_schema_migrations`)
	if err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		for i, st := range m.statements {
			if err := s.conn.Exec(ctx, st); err != nil {
				return fmt.Errorf("migration %04d_%s statement %d: %w", m.version, m.name, i+1, err)
			}
		}
		if err := s.conn.Exec(ctx, `INSERT INTO proofline_schema_migrations (version, name, applied_at) VALUES (?, ?, now64(3))`, m.version, m.name); err != nil {
			return fmt.Errorf("record migration %04d: %w", m.version, err)
		}
		s.log.InfoContext(ctx, "applied migration", "version", m.version, "name", m.name)
	}
	return s.applyRetention(ctx, vars)
}

// ttlDaysRE finds a table's retention TTL in its CREATE statement, as
// ClickHouse normalises it (toIntervalDay(N)) or as written: the
// expression it counts from, and the days.
var ttlDaysRE = regexp.MustCompile(`(?i)\bTTL\s+(.+?)\s*\+\s*(?:toIntervalDay\((\d+)\)|INTERVAL\s+(\d+)\s+DAY)`)

// createTableRE names the table a CREATE TABLE statement makes.
var createTableRE = regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)`)

// retentionTables are the tables whose TTL is --retention-days: those a
// migration creates with {{retention_days}} in the statement (spans and
// the rollups and plan tables made from it), so a new one follows
// without a list to keep.
func retentionTables() ([]string, error) {
	entries, err := fs.ReadDir(schemas.ClickHouseMigrations, "clickhouse")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		raw, err := fs.ReadFile(schemas.ClickHouseMigrations, path.Join("clickhouse", e.Name()))
		if err != nil {
			return nil, err
		}
		for _, st := range splitStatements(string(raw)) {
			if m := createTableRE.FindStringSubmatch(st); m != nil && strings.Contains(st, "{{retention_days}}") {
				out = append(out, m[1])
			}
		}
	}
	return out, nil
}

// applyRetention makes the TTL of every existing retention table follow
// RetentionDays. The TTLs are written by the migrations when the tables
// are made; without this a later --retention-days would be ignored for
// good. Each table is compared on its own, so a start that stopped
// halfway is finished by the next. ClickHouse removes expired parts on
// its own once the TTL is changed (ttl_only_drop_parts: whole days or
// hours at a time).
func (s *Store) applyRetention(ctx context.Context, vars map[string]string) error {
	tables, err := retentionTables()
	if err != nil {
		return err
	}
	ttls, err := s.tableRetentions(ctx, tables)
	if err != nil {
		return err
	}
	for _, table := range tables {
		from, days := ttls[table].from, ttls[table].days
		if days == s.cfg.RetentionDays {
			continue
		}
		if from == "" {
			// Made by hand or by a build that wrote no TTL: say so,
			// and serve; refusing to start would help nobody.
			s.log.WarnContext(ctx, "table has no retention TTL to change", "table", table, "want_days", s.cfg.RetentionDays)
			continue
		}
		// The table is one of the migrations' and the expression is the
		// engine's own rendering of the TTL they wrote: no user input.
		if err := s.conn.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s %s MODIFY TTL %s + INTERVAL %d DAY DELETE`,
			table, vars["on_cluster"], from, s.cfg.RetentionDays)); err != nil {
			return fmt.Errorf("set %s retention to %d days: %w", table, s.cfg.RetentionDays, err)
		}
		s.log.InfoContext(ctx, "retention changed", "table", table, "from_days", days, "to_days", s.cfg.RetentionDays)
	}
	return nil
}

// RetentionDays reads the spans table's TTL in days from ClickHouse (0
// when it has none).
func (s *Store) RetentionDays(ctx context.Context) (int, error) {
	_, days, err := s.tableRetention(ctx, "spans")
	return days, err
}

// tableRetention reads a table's retention TTL: the expression it
// counts from and its days ("", 0 when it has none).
func (s *Store) tableRetention(ctx context.Context, table string) (from string, days int, err error) {
	ttls, err := s.tableRetentions(ctx, []string{table})
	return ttls[table].from, ttls[table].days, err
}

// ttl is a table's retention TTL: the expression it counts from and its
// days.
type ttl struct {
	from string
	days int
}

// tableRetentions reads the retention TTL of each table in one query
// (zero for a table without one); a table that does not exist is an
// error.
func (s *Store) tableRetentions(ctx context.Context, tables []string) (map[string]ttl, error) {
	rows, err := s.conn.Query(ctx, `SELECT name, create_table_query FROM system.tables
		WHERE database = currentDatabase() AND has(?, name)`, tables)
	if err != nil {
		return nil, fmt.Errorf("read the tables' TTLs: %w", err)
	}
	defer rows.Close()
	out := make(map[string]ttl, len(tables))
	for rows.Next() {
		var name, create string
		if err := rows.Scan(&name, &create); err != nil {
			return nil, fmt.Errorf("read the tables' TTLs: %w", err)
		}
		var t ttl
		if m := ttlDaysRE.FindStringSubmatch(create); m != nil {
			t.from = m[1]
			t.days, _ = strconv.Atoi(m[2] + m[3])
		}
		out[name] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the tables' TTLs: %w", err)
	}
	for _, table := range tables {
		if _, ok := out[table]; !ok {
			return nil, fmt.Errorf("read the TTL of %s: no such table", table)
		}
	}
	return out, nil
}

func migrationsEngine(cfg Config) string {
	if cfg.Cluster != "" {
		return "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/proofline_schema_migrations', '{replica}')"
	}
	return "ReplacingMergeTree"
}
