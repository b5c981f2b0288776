-- The spans stored before the onboarding rollup existed. Emptying it
-- first makes this safe to re-run after a crash part-way; migrations run
-- before the span writer starts (on a cluster, upgrade with the writers
-- stopped).
TRUNCATE TABLE IF EXISTS tool_onboarding {{on_cluster}};

INSERT INTO {{onboarding}} (tool_server, tool_name, first_call, calls, oks, first_success)
SELECT tool_server, tool_name, min(ts_start), count(), countIf(outcome_status = 'ok'), minIfState(ts_end, outcome_status = 'ok')
FROM {{spans}} FINAL
GROUP BY tool_server, tool_name;
