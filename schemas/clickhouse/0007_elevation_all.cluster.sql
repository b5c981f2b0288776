-- The Distributed table's columns follow the local table's (0006).
ALTER TABLE spans_all {{on_cluster}}
    ADD COLUMN IF NOT EXISTS elevation_scopes   Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS elevation_approver LowCardinality(String);
