-- Two small rollups kept by views on every insert into spans:
--
-- plans_calls_1h, the calls of plans per hour: the plan sealer keeps
-- with its seal how many there were in the hours its plans' calls fall
-- in, and every plans query checks that nothing arrived there since (a
-- late call), which summed the plan rollup's rows (1.6M at 10M spans,
-- ~20 ms) and now sums an hour's row. No TTL: a row an hour, and the
-- spans' retention dropping old hours here would look like a change.
--
-- spans_failures_1h, the calls that did not succeed per status, error
-- code and hour: the plans KPI's month's top failure causes read whole
-- hours here and the part-hour before now from spans (or spans_recent),
-- instead of every failed call of the month (~30 ms at 10M spans).
CREATE TABLE IF NOT EXISTS plans_calls_1h {{on_cluster}}
(
    hour  DateTime('UTC'),
    calls SimpleAggregateFunction(sum, UInt64)
)
ENGINE = {{plan_calls_engine}}
ORDER BY hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS plans_calls_1h_mv {{on_cluster}} TO plans_calls_1h AS
SELECT toStartOfHour(ts_start) AS hour, count() AS calls
FROM spans
WHERE plan_id != ''
GROUP BY hour;

CREATE TABLE IF NOT EXISTS spans_failures_1h {{on_cluster}}
(
    outcome_status LowCardinality(String),
    error_code     LowCardinality(String),
    hour           DateTime('UTC'),
    calls          SimpleAggregateFunction(sum, UInt64)
)
ENGINE = {{failures_engine}}
ORDER BY (hour, outcome_status, error_code)
TTL hour + INTERVAL {{retention_days}} DAY DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_failures_1h_mv {{on_cluster}} TO spans_failures_1h AS
SELECT outcome_status, error_code, toStartOfHour(ts_start) AS hour, count() AS calls
FROM spans
WHERE outcome_status != 'ok'
GROUP BY outcome_status, error_code, hour;
