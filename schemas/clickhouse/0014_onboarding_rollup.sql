-- Onboarding per tool (server, name) without reading every span: the
-- first call, the first successful call's end, and the call counts, kept
-- by a view on every insert into spans. A handful of rows per tool, so
-- the onboarding KPI's cost follows the number of tools, not of spans
-- (a full GROUP BY over spans took seconds at 10M spans).
--
-- No TTL: a tool onboarded before the spans' retention is still known,
-- with when it was first called; calls counts every call since then.
-- Like the latency rollups, the view sees every inserted row before
-- ReplacingMergeTree collapses anything: the span writer inserts a record
-- once (Store.Insert), which keeps calls exact.
CREATE TABLE IF NOT EXISTS tool_onboarding {{on_cluster}}
(
    tool_server   LowCardinality(String),
    tool_name     LowCardinality(String),
    first_call    SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    calls         SimpleAggregateFunction(sum, UInt64),
    oks           SimpleAggregateFunction(sum, UInt64),
    first_success AggregateFunction(minIf, DateTime64(9, 'UTC'), UInt8)
)
ENGINE = {{onboarding_engine}}
ORDER BY (tool_server, tool_name);

CREATE MATERIALIZED VIEW IF NOT EXISTS tool_onboarding_mv {{on_cluster}} TO tool_onboarding AS
SELECT
    tool_server,
    tool_name,
    min(ts_start) AS first_call,
    count() AS calls,
    countIf(outcome_status = 'ok') AS oks,
    minIfState(ts_end, outcome_status = 'ok') AS first_success
FROM spans
GROUP BY tool_server, tool_name;
