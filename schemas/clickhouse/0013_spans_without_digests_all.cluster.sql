-- The Distributed table's columns follow the local table's (0012).
ALTER TABLE spans_all {{on_cluster}}
    DROP COLUMN IF EXISTS args_sha256,
    DROP COLUMN IF EXISTS result_sha256;
