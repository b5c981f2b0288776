-- The last hours' spans, ordered by start: a newest-first page of
-- /v1/spans reads the last granules here instead of one granule per tool
-- of spans, whose sort key starts with the tool (at 10M spans a first
-- page read ~400k rows there, ~100 ms, for its 100). Kept by a view on
-- every insert into spans, of the spans that started within 3 hours
-- before the insert (and not more than an hour after it, so that an
-- insert touches few hourly partitions); the TTL drops them 3 hours
-- after their start. Spans reads it only for a page's first probe, the
-- hour before now, which it holds whole: a span that started in it was
-- inserted less than 2 hours after that, and is not expired yet.
--
-- Its columns are those of spans when it was made (SELECT * in the
-- view): a migration that changes spans' columns changes both.
CREATE TABLE IF NOT EXISTS spans_recent {{on_cluster}} AS spans
ENGINE = {{recent_engine}}
PARTITION BY toStartOfHour(ts_start)
ORDER BY (ts_start, record_id)
TTL toDateTime(ts_start) + INTERVAL 3 HOUR DELETE
SETTINGS ttl_only_drop_parts = 1, merge_with_ttl_timeout = 600;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_recent_mv {{on_cluster}} TO spans_recent AS
SELECT * FROM spans
WHERE ts_start >= now64(9, 'UTC') - INTERVAL 3 HOUR AND ts_start < now64(9, 'UTC') + INTERVAL 1 HOUR;
