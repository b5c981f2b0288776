-- Cluster mode only: the recent spans of every shard.
CREATE TABLE IF NOT EXISTS spans_recent_all {{on_cluster}} AS spans_recent
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_recent, cityHash64(record_id));
