-- Latency per tool as (server, name) — the same tool name on two servers
-- is two tools — and of calls that ran: a call refused by policy took
-- the hook's fraction of a millisecond, not the tool's time, and mixed
-- into a tool's quantiles it hid the tool's latency.
--
-- The rollups gain tool_server (appended to their sorting key, the only
-- place ClickHouse lets a new column into it), their views are made
-- anew with it and without policy blocks, and the rollups are refilled
-- from the spans. Like 0005: re-runnable after a crash part-way (the
-- refill empties them first); migrations run before the span writer
-- starts; on a cluster, run the upgrade with the writers stopped.
DROP VIEW IF EXISTS spans_latency_1m_mv {{on_cluster}};

DROP VIEW IF EXISTS spans_latency_1h_mv {{on_cluster}};

ALTER TABLE spans_latency_1m {{on_cluster}}
    ADD COLUMN IF NOT EXISTS tool_server LowCardinality(String) AFTER tool_group,
    MODIFY ORDER BY (tool_group, tool_name, minute, tool_server);

ALTER TABLE spans_latency_1h {{on_cluster}}
    ADD COLUMN IF NOT EXISTS tool_server LowCardinality(String) AFTER tool_group,
    MODIFY ORDER BY (tool_group, tool_name, hour, tool_server);

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_latency_1m_mv {{on_cluster}} TO spans_latency_1m AS
SELECT
    tool_group,
    tool_server,
    tool_name,
    toStartOfMinute(ts_start) AS minute,
    count() AS calls,
    sumMap(map({{latency_bucket}}, toUInt64(1))) AS latency_hist
FROM spans
WHERE outcome_status != 'policy_blocked'
GROUP BY tool_group, tool_server, tool_name, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_latency_1h_mv {{on_cluster}} TO spans_latency_1h AS
SELECT
    tool_group,
    tool_server,
    tool_name,
    toStartOfHour(ts_start) AS hour,
    count() AS calls,
    sumMap(map({{latency_bucket}}, toUInt64(1))) AS latency_hist
FROM spans
WHERE outcome_status != 'policy_blocked'
GROUP BY tool_group, tool_server, tool_name, hour;

TRUNCATE TABLE IF EXISTS spans_latency_1m {{on_cluster}};

TRUNCATE TABLE IF EXISTS spans_latency_1h {{on_cluster}};

INSERT INTO {{latency_rollup_1m}} (tool_group, tool_server, tool_name, minute, calls, latency_hist)
SELECT tool_group, tool_server, tool_name, toStartOfMinute(ts_start) AS minute, count() AS calls,
    sumMap(map({{latency_bucket}}, toUInt64(1))) AS latency_hist
FROM {{spans}} FINAL
WHERE outcome_status != 'policy_blocked'
GROUP BY tool_group, tool_server, tool_name, minute;

INSERT INTO {{latency_rollup_1h}} (tool_group, tool_server, tool_name, hour, calls, latency_hist)
SELECT tool_group, tool_server, tool_name, toStartOfHour(ts_start) AS hour, count() AS calls,
    sumMap(map({{latency_bucket}}, toUInt64(1))) AS latency_hist
FROM {{spans}} FINAL
WHERE outcome_status != 'policy_blocked'
GROUP BY tool_group, tool_server, tool_name, hour;
