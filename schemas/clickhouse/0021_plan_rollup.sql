-- Plans per hour: for each plan (calls sharing a plan_id) and hour, its
-- first call, workflow, failing-call counts and first failure, kept by a
-- view on every insert into spans. The plans KPI groups its window's
-- plans from here (a row per plan and hour) and reads only the part-hour
-- at the window's end from spans; grouping every call of 28 days by plan
-- took seconds at 10M spans. The plan is its id's 128-bit SipHash: a
-- fixed-size key groups several times faster than the id's text, and the
-- KPI counts plans, it never shows their ids.
--
-- first_fail is the end of the plan's first call that did not succeed,
-- or 2262-01-01 (the latest DateTime64(9)) when none failed in the hour,
-- so that min() merges it; calls counts the plan's calls in the hour
-- (the plan sealer notices late calls by it). Like the other rollups, the
-- view sees each inserted row once: the span writer inserts a record once.
CREATE TABLE IF NOT EXISTS spans_plans_1h {{on_cluster}}
(
    hour        DateTime('UTC')                                            CODEC(DoubleDelta, ZSTD(1)),
    plan        FixedString(16)                                            CODEC(ZSTD(1)),
    workflow_id SimpleAggregateFunction(any, LowCardinality(String)),
    start       SimpleAggregateFunction(min, DateTime64(9, 'UTC'))         CODEC(ZSTD(1)),
    first_fail  SimpleAggregateFunction(min, DateTime64(9, 'UTC'))         CODEC(ZSTD(1)),
    blocked     SimpleAggregateFunction(sum, UInt64)                       CODEC(T64, ZSTD(1)),
    failed      SimpleAggregateFunction(sum, UInt64)                       CODEC(T64, ZSTD(1)),
    bad         SimpleAggregateFunction(sum, UInt64)                       CODEC(T64, ZSTD(1)),
    calls       SimpleAggregateFunction(sum, UInt64)                       CODEC(T64, ZSTD(1))
)
ENGINE = {{plans_engine}}
PARTITION BY toDate(hour)
ORDER BY (hour, plan)
TTL hour + INTERVAL {{retention_days}} DAY DELETE
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_plans_1h_mv {{on_cluster}} TO spans_plans_1h AS
SELECT
    toStartOfHour(ts_start) AS hour,
    sipHash128(plan_id) AS plan,
    any(workflow_id) AS workflow_id,
    min(ts_start) AS start,
    min(if(outcome_status != 'ok', ts_end, toDateTime64('2262-01-01 00:00:00', 9, 'UTC'))) AS first_fail,
    countIf(outcome_status = 'policy_blocked') AS blocked,
    countIf(outcome_status IN ('tool_error', 'system_error', 'timeout')) AS failed,
    countIf(outcome_status != 'ok') AS bad,
    count() AS calls
FROM spans
WHERE plan_id != ''
GROUP BY hour, plan;
