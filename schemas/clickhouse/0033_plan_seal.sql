-- Sealed plans: the plans KPI's weeks and steps counted ahead of the
-- query for the plans whose calls are all in. Grouping a window's plans
-- at query time (1.67M at 10M spans) took a second; the sealer
-- (Store.SealPlans) counts each hour's plans once, a day after they
-- started (plans are taken to last under a day), and the query groups
-- only the plans since. (Migration 0037 made the day a setting,
-- Config.PlanMaxDuration.)
--
-- plans_sealed_1h: per hour of the plans' start, counts and sums the KPI
-- adds up (plans, policy blocks, system errors, time to detect, time to
-- recover), a row per seal that wrote to the hour (chunk: the sealed-to
-- hour of that seal). A failed plan's recovery (its workflow's next
-- successful plan) is counted by the seal that finds it, in the failed
-- plan's hour. The failed plans still waiting for one whose failure
-- ended before the sealed-to hour are in plans_open_1h, summed per
-- workflow and hour (count, and the sum of their failures' ends in ms):
-- every successful plan after that hour is after all of them, so the
-- first one resolves them all (a resolution adds the negated sums). The
-- few whose failure ended later (a call across the sealed-to hour) wait
-- in plans_pending one by one, with a row per resolution (resolved = 1).
-- plans_seal_state says up to which hour the counts are sealed, how many
-- plan calls were in the rollup's hours then (a late call changes that:
-- the sealer starts over), and the plans begun before that hour with
-- calls after it (the query leaves them out). Rows of a seal that did
-- not finish (chunk after the state's hour) are ignored and deleted by
-- the next.
-- On a cluster the sealer does not run and the KPI groups every plan.
CREATE TABLE IF NOT EXISTS plans_sealed_1h {{on_cluster}}
(
    hour       DateTime('UTC'),
    chunk      DateTime('UTC'),
    plans      SimpleAggregateFunction(sum, UInt64),
    policy     SimpleAggregateFunction(sum, UInt64),
    system     SimpleAggregateFunction(sum, UInt64),
    detect_ms  SimpleAggregateFunction(sum, Int64),
    detected   SimpleAggregateFunction(sum, UInt64),
    recover_ms SimpleAggregateFunction(sum, Int64),
    recovered  SimpleAggregateFunction(sum, UInt64)
)
ENGINE = {{plans_sealed_engine}}
ORDER BY (hour, chunk)
TTL hour + INTERVAL {{retention_days}} DAY DELETE;

CREATE TABLE IF NOT EXISTS plans_open_1h {{on_cluster}}
(
    wf         LowCardinality(String),
    hour       DateTime('UTC'),
    chunk      DateTime('UTC'),
    n          SimpleAggregateFunction(sum, Int64),
    ff_ms      SimpleAggregateFunction(sum, Int64)
)
ENGINE = {{plans_open_engine}}
ORDER BY (wf, hour, chunk)
TTL hour + INTERVAL {{retention_days}} DAY DELETE;

CREATE TABLE IF NOT EXISTS plans_pending {{on_cluster}}
(
    plan       FixedString(16),
    wf         LowCardinality(String),
    start      DateTime64(9, 'UTC'),
    first_fail DateTime64(9, 'UTC'),
    resolved   UInt8,
    chunk      DateTime('UTC')
)
ENGINE = {{plans_pending_engine}}
ORDER BY (wf, plan, chunk)
TTL toDateTime(start) + INTERVAL {{retention_days}} DAY DELETE;

CREATE TABLE IF NOT EXISTS plans_seal_state {{on_cluster}}
(
    id        UInt8,
    sealed_to DateTime('UTC'),
    calls     UInt64,
    tail      Array(String),
    updated   DateTime64(9, 'UTC')
)
ENGINE = {{plans_state_engine}}
ORDER BY id;

CREATE TABLE IF NOT EXISTS plans_seal_scratch {{on_cluster}}
(
    plan       FixedString(16),
    wf         LowCardinality(String),
    start      DateTime64(9, 'UTC'),
    blocked    UInt64,
    failed     UInt64,
    bad        UInt64,
    first_fail DateTime64(9, 'UTC')
)
ENGINE = {{plans_scratch_engine}}
ORDER BY plan;
