-- Spend per tool and hour: the cost anomalies' 7-day baselines read
-- whole hours here (50 tools × 168 hours), the minutes at their edges
-- from spans_cost_tool_1m and the seconds from spans; from the minute
-- rollup alone they read 50 × 10,080 rows (~45 ms at 10M spans). Kept by
-- a view like the other rollups.
CREATE TABLE IF NOT EXISTS spans_cost_tool_1h {{on_cluster}}
(
    cost_currency LowCardinality(String),
    tool_group    LowCardinality(String),
    tool_server   LowCardinality(String),
    tool_name     LowCardinality(String),
    hour          DateTime('UTC')                        CODEC(DoubleDelta, ZSTD(1)),
    calls         SimpleAggregateFunction(sum, UInt64)   CODEC(T64, ZSTD(1)),
    amount        SimpleAggregateFunction(sum, Float64)  CODEC(Gorilla, ZSTD(1))
)
ENGINE = {{cost_tool_hourly_engine}}
PARTITION BY toYYYYMM(hour)
ORDER BY (cost_currency, hour, tool_group, tool_server, tool_name)
TTL hour + INTERVAL {{retention_days}} DAY DELETE
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_cost_tool_1h_mv {{on_cluster}} TO spans_cost_tool_1h AS
SELECT cost_currency, tool_group, tool_server, tool_name, toStartOfHour(ts_start) AS hour, count() AS calls, sum(cost_amount) AS amount
FROM spans
WHERE cost_currency != ''
GROUP BY cost_currency, tool_group, tool_server, tool_name, hour;
