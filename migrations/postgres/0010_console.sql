-- Web console sessions (SPEC §9): the cookie holds a random id; only its
-- SHA-256 is stored. A session of a merchant API key ends when the key is
-- revoked (checked at every request), and every session at expires_at.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    -- NULL: the admin token; else the API key it was opened with
    key_id TEXT REFERENCES api_keys(id),
    -- admin sessions: a fingerprint of the admin token they were opened
    -- with, so a new admin.token ends them
    admin_fingerprint TEXT,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- The console finds payments by reference or transaction hash, and lists a
-- merchant's newest first.
CREATE INDEX payments_reference ON payments (reference);
CREATE INDEX payments_tx_hash ON payments (tx_hash);
CREATE INDEX payments_merchant ON payments (merchant_id, id);

-- Attempts per minute and merchant, kept by the outcome writer in the
-- transaction that records them: the console's charts read at most a day of
-- minutes, whatever the size of delivery_attempts. Kept two days.
CREATE TABLE attempt_stats (
    minute BIGINT NOT NULL,
    merchant_id TEXT NOT NULL,
    succeeded BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, merchant_id)
);

-- The queue and the DLQ once a minute (written by the workers'
-- housekeeping, the first process each minute wins), for the console's
-- charts over time. Kept two days.
CREATE TABLE queue_samples (
    minute BIGINT PRIMARY KEY,
    due BIGINT NOT NULL,
    scheduled BIGINT NOT NULL,
    dlq_open BIGINT NOT NULL
);
