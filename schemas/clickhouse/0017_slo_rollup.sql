-- The error budget per SLO group and minute: calls (policy blocks not
-- counted) and bad calls — those that did not succeed within the group's
-- latency objective. "Within the objective" is exact only against the
-- objective itself (the latency rollups' 1% histograms cannot decide a
-- call at 100.4 ms against 100 ms), so the view counts against the
-- objectives in slo_objectives, which the store writes from the SLO file
-- (Store.SyncObjectives: on a change it empties this rollup, refills it
-- from spans, and writes the new objectives last). Groups without an
-- objective are not counted. The error budget and burn KPIs read whole
-- minutes here and the seconds at a window's edges from spans; while the
-- objectives do not match the SLOs asked about, they read spans.
--
-- Like the other rollups, the view sees each inserted row once: the span
-- writer inserts a record once (Store.Insert), which keeps the counts
-- exact. On a cluster the store does not sync objectives: the error
-- budget reads spans there.
CREATE TABLE IF NOT EXISTS slo_objectives {{on_cluster}}
(
    tool_group String,
    latency_us UInt64
)
ENGINE = {{objectives_engine}}
ORDER BY tool_group;

CREATE TABLE IF NOT EXISTS spans_slo_1m {{on_cluster}}
(
    tool_group LowCardinality(String),
    minute     DateTime('UTC')                       CODEC(DoubleDelta, ZSTD(1)),
    calls      SimpleAggregateFunction(sum, UInt64)  CODEC(T64, ZSTD(1)),
    bad        SimpleAggregateFunction(sum, UInt64)  CODEC(T64, ZSTD(1))
)
ENGINE = {{slo_engine}}
PARTITION BY toDate(minute)
ORDER BY (tool_group, minute)
TTL minute + INTERVAL {{retention_days}} DAY DELETE
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_slo_1m_mv {{on_cluster}} TO spans_slo_1m AS
SELECT
    s.tool_group AS tool_group,
    toStartOfMinute(s.ts_start) AS minute,
    count() AS calls,
    countIf(NOT (s.outcome_status = 'ok' AND s.latency_us <= o.latency_us)) AS bad
FROM spans AS s
INNER JOIN slo_objectives AS o ON s.tool_group = o.tool_group
WHERE s.outcome_status != 'policy_blocked'
GROUP BY tool_group, minute;
