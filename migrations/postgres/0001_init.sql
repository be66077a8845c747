-- payhook schema (Postgres): the SQLite schema with BIGINT for every integer
-- (unix milliseconds, counters); amounts are TEXT decimal strings, never floats.

CREATE TABLE merchants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    webhook_url TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_expires_at BIGINT,
    signature_scheme TEXT NOT NULL DEFAULT 'standard'
        CHECK (signature_scheme IN ('standard', 'hex')),
    signature_header TEXT,
    signature_prefix TEXT,
    -- extra static request headers, a JSON object; values are secrets
    headers TEXT NOT NULL DEFAULT '{}',
    -- JSON array of subscribed event types; NULL = all
    event_types TEXT,
    rate_limit_per_sec BIGINT,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE chains (
    name TEXT PRIMARY KEY,
    head BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants(id),
    reference TEXT NOT NULL,
    chain TEXT NOT NULL,
    token TEXT,
    address TEXT NOT NULL,
    expected_amount TEXT NOT NULL,
    received_amount TEXT,
    tx_hash TEXT,
    block_number BIGINT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'detected', 'confirmed', 'underpaid', 'overpaid', 'expired')),
    callback_url TEXT,
    expires_at BIGINT,
    detected_at BIGINT,
    confirmed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (merchant_id, reference)
);
CREATE INDEX payments_detected ON payments (chain, block_number) WHERE status = 'detected';
CREATE INDEX payments_expiring ON payments (expires_at) WHERE status = 'pending' AND expires_at IS NOT NULL;

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants(id),
    payment_id TEXT REFERENCES payments(id),
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_payment ON events (payment_id);

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events(id),
    merchant_id TEXT NOT NULL REFERENCES merchants(id),
    url TEXT NOT NULL,
    -- scheme://host:port/path of url: the unit of rate limits, circuits and health
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_status_code BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX deliveries_status ON deliveries (status, id);
CREATE INDEX deliveries_merchant ON deliveries (merchant_id, id);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_endpoint_pending ON deliveries (endpoint) WHERE status = 'pending';

-- Since when an endpoint has failed without a success (circuit.disable_after).
CREATE TABLE endpoint_health (
    endpoint TEXT PRIMARY KEY,
    failing_since BIGINT,
    last_failure_at BIGINT,
    last_success_at BIGINT
);

CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries(id),
    attempt BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code BIGINT,
    -- NULL on success; otherwise timeout | connect | status | redirect | body | request | rejected_target
    error_kind TEXT,
    error TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE REFERENCES deliveries(id),
    event_id TEXT NOT NULL REFERENCES events(id),
    merchant_id TEXT NOT NULL REFERENCES merchants(id),
    url TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('exhausted', 'gone', 'endpoint_disabled', 'rejected_target')),
    last_status_code BIGINT,
    last_error TEXT,
    dead_at BIGINT NOT NULL,
    resubmitted_at BIGINT,
    resubmitted_delivery_id TEXT
);
CREATE INDEX dead_letters_merchant ON dead_letters (merchant_id, dead_at);
CREATE INDEX dead_letters_dead_at ON dead_letters (dead_at);
