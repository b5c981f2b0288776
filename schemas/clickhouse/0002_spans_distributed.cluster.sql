-- Cluster mode only: spans_all fans queries out to every shard's spans
-- table and spreads inserts by record id, so a retried record lands on the
-- shard that already holds it and still collapses there.
CREATE TABLE IF NOT EXISTS spans_all {{on_cluster}} AS spans
ENGINE = Distributed({{cluster}}, currentDatabase(), spans, cityHash64(record_id));
