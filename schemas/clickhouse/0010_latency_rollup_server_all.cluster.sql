-- The Distributed rollups gain the column the local ones gain in 0011,
-- before 0011 refills the rollups through them.
ALTER TABLE spans_latency_1m_all {{on_cluster}} ADD COLUMN IF NOT EXISTS tool_server LowCardinality(String) AFTER tool_group;

ALTER TABLE spans_latency_1h_all {{on_cluster}} ADD COLUMN IF NOT EXISTS tool_server LowCardinality(String) AFTER tool_group;
