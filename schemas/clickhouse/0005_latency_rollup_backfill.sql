-- Spans stored before the rollups existed: the views only see inserts made
-- after they were created. Emptying the rollups first makes this migration
-- safe to re-run after a crash part-way through. Migrations run before
-- the span writer starts, so no insert races the backfill in one process;
-- on a cluster, run the upgrade with the writers stopped.
TRUNCATE TABLE IF EXISTS spans_latency_1m {{on_cluster}};

TRUNCATE TABLE IF EXISTS spans_latency_1h {{on_cluster}};

INSERT INTO {{latency_rollup_1m}}
SELECT tool_group, tool_name, toStartOfMinute(ts_start) AS minute, count() AS calls,
    sumMap(map({{latency_bucket}}, toUInt64(1))) AS latency_hist
FROM {{spans}} FINAL
GROUP BY tool_group, tool_name, minute;

INSERT INTO {{latency_rollup_1h}}
SELECT tool_group, tool_name, toStartOfHour(ts_start) AS hour, count() AS calls,
    sumMap(map({{latency_bucket}}, toUInt64(1))) AS latency_hist
FROM {{spans}} FINAL
GROUP BY tool_group, tool_name, hour;
