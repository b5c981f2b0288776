-- The newest spans by leaf index, for the first page of /v1/spans when
-- less than a page started in the last hour (from spans_recent): spans is
-- sorted by tool first, so the newest hour there is a granule of every
-- column per tool (at 10M spans 75–90 ms for a page of 100), while this
-- table is at most 4096 rows, one per slot (leaf_index % 4096): the
-- newest leaf of each slot, which ReplacingMergeTree keeps by version.
-- Leaves come in log order, which is nearly start order; Spans checks
-- against spans that a page read here is exactly the page spans gives
-- (no other span at or after its oldest start) and reads spans when it
-- is not, so a late call, a gap in the leaves, or a span gone from spans
-- costs time, never a wrong page. Kept no longer than the spans.
--
-- The view writes a block's 4096 newest leaves (the others cannot be the
-- newest of their slot when the block's leaves run on). Its columns are
-- those of spans when it was made (SELECT *), as spans_recent's are: a
-- migration that changes spans' columns changes all three.
CREATE TABLE IF NOT EXISTS spans_latest {{on_cluster}} AS spans
ENGINE = {{latest_engine}}
ORDER BY leaf_index % 4096
TTL toDateTime(ts_start) + INTERVAL {{retention_days}} DAY DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_latest_mv {{on_cluster}} TO spans_latest AS
SELECT * FROM spans ORDER BY leaf_index DESC LIMIT 4096;
