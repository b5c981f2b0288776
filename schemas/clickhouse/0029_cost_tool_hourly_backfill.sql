-- The spans stored before the per-tool hourly cost rollup existed;
-- re-runnable (emptied first). Migrations run before the span writer
-- starts; on a cluster, upgrade with the writers stopped.
TRUNCATE TABLE IF EXISTS spans_cost_tool_1h {{on_cluster}};

INSERT INTO {{cost_tool_hourly_rollup}} (cost_currency, tool_group, tool_server, tool_name, hour, calls, amount)
SELECT cost_currency, tool_group, tool_server, tool_name, toStartOfHour(ts_start) AS hour, count(), sum(cost_amount)
FROM {{spans}} FINAL
WHERE cost_currency != ''
GROUP BY cost_currency, tool_group, tool_server, tool_name, hour;
