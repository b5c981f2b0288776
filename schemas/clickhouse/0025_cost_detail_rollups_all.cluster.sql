-- Cluster mode only: the per-tool and per-workflow cost rollups of every shard.
CREATE TABLE IF NOT EXISTS spans_cost_tool_1m_all {{on_cluster}} AS spans_cost_tool_1m
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_cost_tool_1m, rand());

CREATE TABLE IF NOT EXISTS spans_cost_workflow_1h_all {{on_cluster}} AS spans_cost_workflow_1h
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_cost_workflow_1h, rand());
