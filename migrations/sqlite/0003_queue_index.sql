-- The queue's pick query (apalis-sqlite) orders by (priority DESC, run_at,
-- id) within a queue; this index serves it in order instead of sorting every
-- pending job on every fetch (whose cost grows with the backlog otherwise).
-- Before this file, `payhook migrate` created the index by hand.
CREATE INDEX IF NOT EXISTS payhook_jobs_pick ON Jobs (job_type, status, priority DESC, run_at, id);
