-- The spans stored before the cost rollup existed; re-runnable (emptied
-- first). Migrations run before the span writer starts; on a cluster,
-- upgrade with the writers stopped.
TRUNCATE TABLE IF EXISTS spans_cost_1m {{on_cluster}};

INSERT INTO {{cost_rollup}} (cost_currency, minute, calls, amount)
SELECT cost_currency, toStartOfMinute(ts_start) AS minute, count(), sum(cost_amount)
FROM {{spans}} FINAL
WHERE cost_amount != 0
GROUP BY cost_currency, minute;
