-- Cluster mode only: the plan-call and failure rollups of every shard.
CREATE TABLE IF NOT EXISTS plans_calls_1h_all {{on_cluster}} AS plans_calls_1h
ENGINE = Distributed({{cluster}}, currentDatabase(), plans_calls_1h, rand());

CREATE TABLE IF NOT EXISTS spans_failures_1h_all {{on_cluster}} AS spans_failures_1h
ENGINE = Distributed({{cluster}}, currentDatabase(), spans_failures_1h, rand());
