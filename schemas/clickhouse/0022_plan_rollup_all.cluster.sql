-- Cluster mode only: the plan rollups of every shard (a plan's calls on
-- two shards are two rows, merged by the KPI's GROUP BY).
CREATE TABLE IF NOT EXISTS spans_plans_1h_all {{on_cluster}} AS spans_plans_1h
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_plans_1h, rand());
