-- The spans stored before the plan-call and failure rollups existed;
-- re-runnable (emptied first). Migrations run before the span writer
-- starts; on a cluster, upgrade with the writers stopped.
TRUNCATE TABLE IF EXISTS plans_calls_1h {{on_cluster}};

TRUNCATE TABLE IF EXISTS spans_failures_1h {{on_cluster}};

INSERT INTO {{plan_calls}} (hour, calls)
SELECT toStartOfHour(ts_start) AS hour, count()
FROM {{spans}} FINAL
WHERE plan_id != ''
GROUP BY hour;

INSERT INTO {{failures_rollup}} (outcome_status, error_code, hour, calls)
SELECT outcome_status, error_code, toStartOfHour(ts_start) AS hour, count()
FROM {{spans}} FINAL
WHERE outcome_status != 'ok'
GROUP BY outcome_status, error_code, hour;
