-- Every index on the queue's table is rewritten each time a job is queued,
-- picked and finished: three of them served no statement payhook runs.
-- - payhook_jobs_pick (0003) is apalis' own `idx_jobs_pending` since
--   apalis-sqlite 1.0 (its fetch uses that one);
-- - idx_jobs_status_run_at serves apalis' stats and vacuum, which payhook
--   does not run (it prunes with `store::jobs::prune`);
-- - idx_jobs_claimable serves apalis' `lock_tasks`, which payhook turns off
--   (`delivery::workers`: fetch already owns the jobs it returns).
-- Queue depth and the per-lane counts use idx_jobs_job_type_status_run_at.
-- Measured: docs/benchmarks.md ("Fewer indexes on the queue").
DROP INDEX IF EXISTS payhook_jobs_pick;
DROP INDEX IF EXISTS idx_jobs_status_run_at;
DROP INDEX IF EXISTS idx_jobs_claimable;
