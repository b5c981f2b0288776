-- Cluster mode only: the latest spans of every shard.
CREATE TABLE IF NOT EXISTS spans_latest_all {{on_cluster}} AS spans_latest
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_latest, cityHash64(record_id));
