-- The longest a plan is taken to last (Config.PlanMaxDuration, serve's
-- --plan-max-duration), kept with the seal it was sealed under: the
-- sealed counts hold only for that bound, so a store opened with another
-- one neither reads them nor adds to them, and the sealer starts over.
-- Seals made before this column existed were made under a day.
ALTER TABLE plans_seal_state {{on_cluster}} ADD COLUMN IF NOT EXISTS max_plan_s UInt32 DEFAULT 86400;
