-- Several webhook endpoints per merchant (SPEC §3). Everything about where
-- and how a merchant's events are sent moves from `merchants` to
-- `endpoints`; each existing merchant's settings become its first (primary)
-- endpoint, keeping its secret (sealed text copied as is), so receivers keep
-- verifying. The primary endpoint's id derives from the merchant's, so a
-- second process migrating at once cannot make two.
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants(id),
    url TEXT NOT NULL,
    description TEXT,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_expires_at INTEGER,
    signature_scheme TEXT NOT NULL DEFAULT 'standard'
        CHECK (signature_scheme IN ('standard', 'hex')),
    signature_header TEXT,
    signature_prefix TEXT,
    -- extra static request headers, a JSON object, sealed (values are secrets)
    headers TEXT NOT NULL DEFAULT '{}',
    -- JSON array of subscribed event types; NULL = all
    event_types TEXT,
    rate_limit_per_sec INTEGER,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason TEXT,
    created_at INTEGER NOT NULL,
    -- set by DELETE: the row stays for its deliveries and dead letters
    deleted_at INTEGER
);
CREATE INDEX endpoints_merchant ON endpoints (merchant_id, created_at, id);

INSERT INTO endpoints (id, merchant_id, url, secret, previous_secret,
    previous_secret_expires_at, signature_scheme, signature_header, signature_prefix,
    headers, event_types, rate_limit_per_sec, status, disabled_reason, created_at)
SELECT 'ep_' || substr(id, 5), id, webhook_url, secret, previous_secret,
    previous_secret_expires_at, signature_scheme, signature_header, signature_prefix,
    headers, event_types, rate_limit_per_sec, status, disabled_reason, created_at
FROM merchants;

-- The merchant columns are no longer read; the secrets in them are not kept twice.
UPDATE merchants SET secret = '', previous_secret = NULL, previous_secret_expires_at = NULL,
    headers = '{}';

ALTER TABLE deliveries ADD COLUMN endpoint_id TEXT REFERENCES endpoints(id);
-- Every delivery went to its merchant's URL of the time, except those of
-- payments with a callback_url (which stay without an endpoint).
UPDATE deliveries SET endpoint_id = 'ep_' || substr(merchant_id, 5)
WHERE NOT EXISTS (SELECT 1 FROM events e JOIN payments p ON p.id = e.payment_id
    WHERE e.id = deliveries.event_id AND p.callback_url IS NOT NULL);
CREATE INDEX deliveries_endpoint_id ON deliveries (endpoint_id, id);

ALTER TABLE dead_letters ADD COLUMN endpoint_id TEXT REFERENCES endpoints(id);
UPDATE dead_letters SET endpoint_id =
    (SELECT endpoint_id FROM deliveries d WHERE d.id = dead_letters.delivery_id);
CREATE INDEX dead_letters_endpoint ON dead_letters (endpoint_id, dead_at);

-- An outage counts failures in a row, so `endpoint.failing` is sent once
-- per outage, when the count reaches circuit.failure_threshold (SPEC §9).
ALTER TABLE endpoint_health ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoint_health ADD COLUMN failing_reported INTEGER NOT NULL DEFAULT 0;
