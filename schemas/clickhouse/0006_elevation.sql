-- Call record v1's optional elevation: the scopes granted for the call
-- beyond scope_grants, and who approved them (both empty without one).
-- Appended after leaf_index: the span writer inserts columns in table order.
ALTER TABLE spans {{on_cluster}}
    ADD COLUMN IF NOT EXISTS elevation_scopes   Array(LowCardinality(String)) CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS elevation_approver LowCardinality(String);
