-- Per-tool latency rollups, per minute and per hour, so the latency KPI
-- reads a few hundred pre-aggregated states per tool and week instead of
-- every span: whole hours of a window come from spans_latency_1h, the
-- whole minutes at its edges from spans_latency_1m, and the seconds at
-- its very edges from spans. The cost of a query follows the window's
-- length, not the number of spans in it.
--
-- The state is a histogram of latency on a logarithmic scale: bucket
-- round(ln(µs) / ln(1.02)), so every latency is within 1% of its bucket's
-- value and a quantile read from the merged histogram is within 1% of the
-- exact one. It is summed with sumMap, which merges about eight times
-- faster than quantilesDD or quantilesTDigest states (measured on the
-- embedded engine) and is at most a few hundred entries per tool and
-- bucket. Quantiles are read off the merged histogram by proofline
-- (spanstore.Latency); exact ones stay available from spans (exact=true).
-- The bucket formula is also in spanstore (latencyBucketBase): change both.
--
-- The view sees every block inserted into spans, before ReplacingMergeTree
-- collapses anything, so it counts a record twice if it is inserted twice:
-- the span writer therefore inserts only records not already stored
-- (Store.Insert), which keeps the rollup exact in calls.
CREATE TABLE IF NOT EXISTS spans_latency_1m {{on_cluster}}
(
    tool_group  LowCardinality(String),
    tool_name   LowCardinality(String),
    minute      DateTime('UTC')                                      CODEC(DoubleDelta, ZSTD(1)),
    calls       SimpleAggregateFunction(sum, UInt64)                 CODEC(T64, ZSTD(1)),
    latency_hist SimpleAggregateFunction(sumMap, Map(UInt16, UInt64))  CODEC(ZSTD(3))
)
ENGINE = {{aggregating_engine_1m}}
PARTITION BY toDate(minute)
ORDER BY (tool_group, tool_name, minute)
TTL minute + INTERVAL {{retention_days}} DAY DELETE
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_latency_1m_mv {{on_cluster}} TO spans_latency_1m AS
SELECT
    tool_group,
    tool_name,
    toStartOfMinute(ts_start) AS minute,
    count() AS calls,
    sumMap(map({{latency_bucket}}, toUInt64(1))) AS latency_hist
FROM spans
GROUP BY tool_group, tool_name, minute;

CREATE TABLE IF NOT EXISTS spans_latency_1h {{on_cluster}}
(
    tool_group  LowCardinality(String),
    tool_name   LowCardinality(String),
    hour        DateTime('UTC')                                      CODEC(DoubleDelta, ZSTD(1)),
    calls       SimpleAggregateFunction(sum, UInt64)                 CODEC(T64, ZSTD(1)),
    latency_hist SimpleAggregateFunction(sumMap, Map(UInt16, UInt64))  CODEC(ZSTD(3))
)
ENGINE = {{aggregating_engine_1h}}
PARTITION BY toDate(hour)
ORDER BY (tool_group, tool_name, hour)
TTL hour + INTERVAL {{retention_days}} DAY DELETE
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_latency_1h_mv {{on_cluster}} TO spans_latency_1h AS
SELECT
    tool_group,
    tool_name,
    toStartOfHour(ts_start) AS hour,
    count() AS calls,
    sumMap(map({{latency_bucket}}, toUInt64(1))) AS latency_hist
FROM spans
GROUP BY tool_group, tool_name, hour;
