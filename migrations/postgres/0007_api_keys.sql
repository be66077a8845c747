-- Merchant API keys: the key itself is shown once and stored only as its
-- SHA-256 (keys are 32 random bytes, so a plain hash suffices).
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants(id),
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_merchant ON api_keys (merchant_id, id);
