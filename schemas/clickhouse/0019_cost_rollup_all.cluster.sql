-- Cluster mode only: the cost rollups of every shard.
CREATE TABLE IF NOT EXISTS spans_cost_1m_all {{on_cluster}} AS spans_cost_1m
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_cost_1m, rand());
