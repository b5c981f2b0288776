-- The spans stored before the per-tool and per-workflow cost rollups
-- existed; re-runnable (emptied first). Migrations run before the span
-- writer starts; on a cluster, upgrade with the writers stopped.
TRUNCATE TABLE IF EXISTS spans_cost_tool_1m {{on_cluster}};

TRUNCATE TABLE IF EXISTS spans_cost_workflow_1h {{on_cluster}};

INSERT INTO {{cost_tool_rollup}} (cost_currency, tool_group, tool_server, tool_name, minute, calls, amount)
SELECT cost_currency, tool_group, tool_server, tool_name, toStartOfMinute(ts_start) AS minute, count(), sum(cost_amount)
FROM {{spans}} FINAL
WHERE cost_currency != ''
GROUP BY cost_currency, tool_group, tool_server, tool_name, minute;

INSERT INTO {{cost_workflow_rollup}} (cost_currency, workflow_id, hour, calls, amount)
SELECT cost_currency, workflow_id, toStartOfHour(ts_start) AS hour, count(), sum(cost_amount)
FROM {{spans}} FINAL
WHERE cost_currency != ''
GROUP BY cost_currency, workflow_id, hour;
