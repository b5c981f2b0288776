-- The newest 4096 leaves stored before spans_latest existed; re-runnable
-- (emptied first). Migrations run before the span writer starts; on a
-- cluster, upgrade with the writers stopped.
TRUNCATE TABLE IF EXISTS spans_latest {{on_cluster}};

INSERT INTO {{latest}}
SELECT * FROM {{spans}}
WHERE leaf_index + 4096 > (SELECT max(leaf_index) FROM {{spans}});
