-- The spans stored before the plan rollup existed; re-runnable (emptied
-- first). Migrations run before the span writer starts; on a cluster,
-- upgrade with the writers stopped.
TRUNCATE TABLE IF EXISTS spans_plans_1h {{on_cluster}};

INSERT INTO {{plans_rollup}} (hour, plan, workflow_id, start, first_fail, blocked, failed, bad, calls)
SELECT toStartOfHour(ts_start) AS hour, sipHash128(plan_id) AS plan, any(workflow_id), min(ts_start),
    min(if(outcome_status != 'ok', ts_end, toDateTime64('2262-01-01 00:00:00', 9, 'UTC'))),
    countIf(outcome_status = 'policy_blocked'),
    countIf(outcome_status IN ('tool_error', 'system_error', 'timeout')),
    countIf(outcome_status != 'ok'),
    count()
FROM {{spans}} FINAL
WHERE plan_id != ''
GROUP BY hour, plan;
