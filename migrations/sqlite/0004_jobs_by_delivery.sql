-- Finding a delivery's queued job (the reconciler, cancelling a disabled
-- endpoint's jobs, waking a merchant's): an index on the delivery id inside
-- the job's JSON. (Postgres has `payhook_jobs_delivery` on the metadata.)
CREATE INDEX IF NOT EXISTS payhook_jobs_delivery ON Jobs ((CAST(job AS TEXT) ->> 'delivery_id'));
