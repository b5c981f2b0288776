-- On a cluster the catalog is written and read through a Distributed
-- table, as the spans are.
CREATE TABLE IF NOT EXISTS tool_catalog_all {{on_cluster}} AS tool_catalog
ENGINE = Distributed({{cluster}}, currentDatabase(), tool_catalog, cityHash64(tool_server, tool_name));
