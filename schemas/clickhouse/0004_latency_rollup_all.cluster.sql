-- Cluster mode only: the rollups of every shard. Each shard's views fill
-- its local rollups from the spans it holds; sketches merge across shards,
-- so reading through these tables answers for the whole cluster.
CREATE TABLE IF NOT EXISTS spans_latency_1m_all {{on_cluster}} AS spans_latency_1m
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_latency_1m, rand());

CREATE TABLE IF NOT EXISTS spans_latency_1h_all {{on_cluster}} AS spans_latency_1h
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_latency_1h, rand());
