-- payhook's changes to the queue's tables (apalis-postgres' `apalis.jobs`),
-- applied after apalis' own migrations. Before this file they were made by
-- `payhook migrate` by hand; every statement here is idempotent, so a
-- database set up that way upgrades cleanly. Why each exists:
-- docs/decisions.md, "Postgres".

-- Jobs carry their delivery's id, endpoint and merchant in `metadata` (an
-- hstore): parking an endpoint, cancelling deliveries or waking a merchant's
-- jobs is then a one-table, index-backed query.
CREATE INDEX IF NOT EXISTS payhook_jobs_delivery ON apalis.jobs ((metadata -> 'delivery_id'));
CREATE INDEX IF NOT EXISTS payhook_jobs_endpoint ON apalis.jobs ((metadata -> 'endpoint'))
    WHERE status = 'Pending';

-- One NOTIFY per insert statement instead of apalis' trigger, which builds a
-- JSON payload per inserted row (most of the cost of an insert); payhook's
-- listener only needs to know that something was inserted.
CREATE OR REPLACE FUNCTION apalis.payhook_notify_jobs() RETURNS trigger AS $f$
BEGIN
    PERFORM pg_notify('apalis::job::insert', 'payhook.deliveries.*');
    RETURN NULL;
END;
$f$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER payhook_notify_jobs AFTER INSERT ON apalis.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION apalis.payhook_notify_jobs();
ALTER TABLE apalis.jobs DISABLE TRIGGER notify_workers;

-- apalis' pick function joins its picked ids back to the table, a plan that
-- goes quadratic on the stale statistics a queue table always has; this one
-- updates the same rows by primary key.
CREATE OR REPLACE FUNCTION apalis.get_jobs(worker_id TEXT, v_job_type TEXT, v_job_count INTEGER DEFAULT 5)
    RETURNS SETOF apalis.jobs LANGUAGE sql VOLATILE SET enable_seqscan = off AS $f$
    /* payhook: same rows as apalis' get_jobs, but the picked ids are
       updated by primary key whatever the table statistics say */
    UPDATE apalis.jobs j SET status = 'Queued', lock_by = worker_id, lock_at = now()
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM apalis.jobs
        WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))
          AND run_at < now() AND job_type = v_job_type
        ORDER BY priority DESC, run_at ASC LIMIT v_job_count FOR UPDATE SKIP LOCKED))
    RETURNING j.*;
$f$;

-- The queue table churns (every job is inserted, locked and deleted):
-- autovacuum visits it after 1,000 dead rows rather than 20 % of the table.
ALTER TABLE apalis.jobs SET (autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0);

-- payhook's own statements on the queue table, as functions so they run with
-- sequential scans off: as joins against a table last analyzed empty, they
-- were planned as a full scan per row.
CREATE OR REPLACE FUNCTION apalis.payhook_finish_jobs(ids jsonb) RETURNS void
    LANGUAGE sql VOLATILE SET enable_seqscan = off AS $f$
    DELETE FROM apalis.jobs WHERE id = ANY(ARRAY(
        SELECT value ->> 'id' FROM jsonb_array_elements(ids)));
$f$;
CREATE OR REPLACE FUNCTION apalis.payhook_park_endpoint(v_endpoint text, v_until bigint,
    v_first text, v_retry text) RETURNS void
    LANGUAGE sql VOLATILE SET enable_seqscan = off AS $f$
    UPDATE apalis.jobs SET run_at = to_timestamp(v_until) WHERE id = ANY(ARRAY(
        SELECT id FROM apalis.jobs WHERE metadata -> 'endpoint' = v_endpoint
          AND status = 'Pending' AND job_type IN (v_first, v_retry)
          AND run_at < to_timestamp(v_until) FOR UPDATE SKIP LOCKED));
$f$;
