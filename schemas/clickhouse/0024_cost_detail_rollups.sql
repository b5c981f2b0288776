-- Spend per tool and minute, and per workflow and hour, kept by views on
-- every insert into spans: the cost KPI's anomalies (each tool's last
-- hour against its 7 days before, and its group's) and its month's top
-- workflows read these and only the seconds at their windows' edges
-- from spans; both read every span of 7 days and of the month before
-- (~0.6 s at 10M spans). Every call with a currency counts, with an
-- amount of 0 or not, as the KPI counts them. Like the other rollups,
-- the span writer inserts each record once.
CREATE TABLE IF NOT EXISTS spans_cost_tool_1m {{on_cluster}}
(
    cost_currency LowCardinality(String),
    tool_group    LowCardinality(String),
    tool_server   LowCardinality(String),
    tool_name     LowCardinality(String),
    minute        DateTime('UTC')                        CODEC(DoubleDelta, ZSTD(1)),
    calls         SimpleAggregateFunction(sum, UInt64)   CODEC(T64, ZSTD(1)),
    amount        SimpleAggregateFunction(sum, Float64)  CODEC(Gorilla, ZSTD(1))
)
ENGINE = {{cost_tool_engine}}
PARTITION BY toDate(minute)
ORDER BY (cost_currency, minute, tool_group, tool_server, tool_name)
TTL minute + INTERVAL {{retention_days}} DAY DELETE
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_cost_tool_1m_mv {{on_cluster}} TO spans_cost_tool_1m AS
SELECT cost_currency, tool_group, tool_server, tool_name, toStartOfMinute(ts_start) AS minute, count() AS calls, sum(cost_amount) AS amount
FROM spans
WHERE cost_currency != ''
GROUP BY cost_currency, tool_group, tool_server, tool_name, minute;

CREATE TABLE IF NOT EXISTS spans_cost_workflow_1h {{on_cluster}}
(
    cost_currency LowCardinality(String),
    workflow_id   LowCardinality(String),
    hour          DateTime('UTC')                        CODEC(DoubleDelta, ZSTD(1)),
    calls         SimpleAggregateFunction(sum, UInt64)   CODEC(T64, ZSTD(1)),
    amount        SimpleAggregateFunction(sum, Float64)  CODEC(Gorilla, ZSTD(1))
)
ENGINE = {{cost_workflow_engine}}
PARTITION BY toYYYYMM(hour)
ORDER BY (cost_currency, hour, workflow_id)
TTL hour + INTERVAL {{retention_days}} DAY DELETE
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_cost_workflow_1h_mv {{on_cluster}} TO spans_cost_workflow_1h AS
SELECT cost_currency, workflow_id, toStartOfHour(ts_start) AS hour, count() AS calls, sum(cost_amount) AS amount
FROM spans
WHERE cost_currency != ''
GROUP BY cost_currency, workflow_id, hour;
