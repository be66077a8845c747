-- Who changed what: one row per call that changes something, from the API
-- or the CLI. `actor` is `admin` (the admin token or the CLI) or, later, a
-- merchant API key's id; `summary` is JSON without secrets.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object_id TEXT,
    summary TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_object ON audit_log (object_id, id);
