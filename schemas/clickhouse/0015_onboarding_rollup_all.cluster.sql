-- Cluster mode only: the onboarding rollups of every shard.
CREATE TABLE IF NOT EXISTS tool_onboarding_all {{on_cluster}} AS tool_onboarding
ENGINE = Distributed({{cluster}}, currentDatabase(), tool_onboarding, rand());
