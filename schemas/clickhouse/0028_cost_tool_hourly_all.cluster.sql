-- Cluster mode only: the per-tool hourly cost rollups of every shard.
CREATE TABLE IF NOT EXISTS spans_cost_tool_1h_all {{on_cluster}} AS spans_cost_tool_1h
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_cost_tool_1h, rand());
