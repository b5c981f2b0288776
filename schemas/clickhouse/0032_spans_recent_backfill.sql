-- The last 3 hours' spans stored before spans_recent existed; re-runnable
-- (emptied first). Migrations run before the span writer starts; on a
-- cluster, upgrade with the writers stopped.
TRUNCATE TABLE IF EXISTS spans_recent {{on_cluster}};

INSERT INTO {{recent}}
SELECT * FROM {{spans}} FINAL
WHERE ts_start >= now64(9, 'UTC') - INTERVAL 3 HOUR AND ts_start < now64(9, 'UTC') + INTERVAL 1 HOUR;
