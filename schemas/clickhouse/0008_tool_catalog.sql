-- The tool catalog: what each MCP server offered agents, from the catalog
-- records of the log (mcp.method "catalog/tool"): each tool's
-- registration, every change of its title, version, schemas, description
-- or annotations, and its removal, with the evidence pointer of the
-- record. No TTL: a tool's registration outlives the spans' retention,
-- and onboarding lead time is measured from it.
CREATE TABLE IF NOT EXISTS tool_catalog {{on_cluster}}
(
    tool_server          LowCardinality(String),
    tool_name            LowCardinality(String),
    ts                   DateTime64(9, 'UTC'),
    change               LowCardinality(String),
    tool_version         LowCardinality(String),
    tool_group           LowCardinality(String),
    owner                LowCardinality(String),
    title                String,
    input_schema_sha256  String,
    output_schema_sha256 String,
    description_sha256   String,
    annotations          String,
    record_id            String,
    log_origin           LowCardinality(String),
    leaf_index           UInt64
)
ENGINE = {{catalog_engine}}
ORDER BY (tool_server, tool_name, ts, record_id);
