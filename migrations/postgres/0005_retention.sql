-- Retention and cheap gauges at any table size.
-- The readiness probe writes here: a database that cannot take a write is
-- not ready.
CREATE TABLE payhook_heartbeat (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL
);
-- The DLQ size gauge counts only rows not yet resubmitted.
CREATE INDEX dead_letters_open ON dead_letters (dead_at) WHERE resubmitted_at IS NULL;
-- Retention removes an event once no delivery or dead letter refers to it.
CREATE INDEX dead_letters_event ON dead_letters (event_id);
