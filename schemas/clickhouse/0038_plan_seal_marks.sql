-- plans_seal_marks: every finished seal step's sealed-to hour (chunk),
-- with what plans_seal_state held then (the plan calls counted before
-- the end of its plans' calls, the plans still going, the bound). A call
-- that arrives late makes the sealer go back to the latest mark whose
-- count still holds — the hours before it are untouched by the late
-- call — rather than to the start; rows of later chunks are deleted as
-- those of a seal that stopped part-way are.
CREATE TABLE IF NOT EXISTS plans_seal_marks {{on_cluster}}
(
    chunk      DateTime('UTC'),
    calls      UInt64,
    tail       Array(String),
    max_plan_s UInt32
)
ENGINE = {{plans_marks_engine}}
ORDER BY chunk;
