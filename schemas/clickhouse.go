package schemas

import "embed"

// ClickHouseMigrations holds the span store's DDL as versioned migrations
// (clickhouse/NNNN_name.sql), applied in order by query/spanstore.
//
//go:embed clickhouse/*.sql
var ClickHouseMigrations embed.FS
