-- The argument and result digests leave the span table: SREs do not
-- query them, they are in the log (each row's leaf_index reaches the
-- record, and /v1/proof proves it), and 64 bytes of random hex a row
-- were two fifths of the table on disk — they do not compress.
ALTER TABLE spans {{on_cluster}}
    DROP COLUMN IF EXISTS args_sha256,
    DROP COLUMN IF EXISTS result_sha256;
