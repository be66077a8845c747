-- Index-backed filters of GET /v1/deliveries: by event type (through
-- events), by payment (events_payment already exists), by creation time.
CREATE INDEX events_type ON events (type, id);
CREATE INDEX deliveries_created ON deliveries (created_at);
