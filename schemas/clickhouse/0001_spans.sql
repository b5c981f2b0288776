-- proofline spans: one row per call record, with the record's evidence
-- pointer (log origin, leaf index) so every row can be proven in the log.
--
-- Sort key (tool_group, tool_name, ts_start, record_id): per-group and
-- per-tool KPI scans read contiguous ranges; trace lookups use the bloom
-- filter skip index. ReplacingMergeTree collapses rows with the same sort
-- key, so a retried record (same tool, same start, same id) is one span;
-- KPI queries read with FINAL so a not-yet-merged retry never counts twice.
-- {{...}} placeholders are filled by the migration runner from validated
-- configuration (integers and identifiers only).
CREATE TABLE IF NOT EXISTS spans {{on_cluster}}
(
    record_id        String                         CODEC(ZSTD(3)),
    ts_start         DateTime64(9, 'UTC')           CODEC(DoubleDelta, ZSTD(1)),
    ts_end           DateTime64(9, 'UTC')           CODEC(DoubleDelta, ZSTD(1)),
    latency_us       UInt64                         CODEC(T64, ZSTD(1)),
    actor_id         LowCardinality(String),
    actor_type       LowCardinality(String),
    on_behalf_of     LowCardinality(String),
    tool_name        LowCardinality(String),
    tool_server      LowCardinality(String),
    tool_version     LowCardinality(String),
    tool_group       LowCardinality(String),
    mcp_method       LowCardinality(String),
    mcp_session_id   String                         CODEC(ZSTD(3)),
    mcp_request_id   String                         CODEC(ZSTD(3)),
    mcp_transport    LowCardinality(String),
    trace_id         String                         CODEC(ZSTD(3)),
    span_id          String                         CODEC(ZSTD(3)),
    parent_span_id   String                         CODEC(ZSTD(3)),
    scope_grants     Array(LowCardinality(String))  CODEC(ZSTD(3)),
    policy_decision  LowCardinality(String),
    policy_rule      LowCardinality(String),
    policy_reason    String                         CODEC(ZSTD(3)),
    outcome_status   LowCardinality(String),
    error_code       LowCardinality(String),
    error_message    String                         CODEC(ZSTD(3)),
    args_sha256      String                         CODEC(ZSTD(3)),
    result_sha256    String                         CODEC(ZSTD(3)),
    cost_amount      Float64                        CODEC(Gorilla, ZSTD(1)),
    cost_currency    LowCardinality(String),
    tokens_in        UInt64                         CODEC(T64, ZSTD(1)),
    tokens_out       UInt64                         CODEC(T64, ZSTD(1)),
    workflow_id      LowCardinality(String),
    plan_id          String                         CODEC(ZSTD(3)),
    region           LowCardinality(String),
    data_class       LowCardinality(String),
    attributes       Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    ingested_by      LowCardinality(String),
    log_origin       LowCardinality(String),
    leaf_index       UInt64                         CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 4
)
ENGINE = {{replacing_engine}}
PARTITION BY toDate(ts_start)
ORDER BY (tool_group, tool_name, ts_start, record_id)
TTL toDateTime(ts_start) + INTERVAL {{retention_days}} DAY DELETE
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;
