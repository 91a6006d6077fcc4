-- Webhooks: endpoints, deliveries and the fan-out cursor, beside the events they deliver (also
-- when the events themselves are kept in NATS JetStream). Times are unix seconds.
--
-- An endpoint's secret is kept as is: the sender needs it to sign. This file is created with
-- mode 0600 (like the key store and the audit database); the API never returns a secret after
-- the answer that created or rolled it.
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    url         TEXT NOT NULL,
    description TEXT,
    -- JSON array of event type names.
    types       TEXT NOT NULL,
    secret      TEXT NOT NULL,
    -- The secret before the last roll, still signing until previous_secret_expires_at.
    previous_secret            TEXT,
    previous_secret_expires_at INTEGER,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant, id);

-- One row per event and endpoint: the unique pair makes the fan-out idempotent.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant           TEXT NOT NULL,
    event_id         INTEGER NOT NULL,
    event_type       TEXT NOT NULL,
    -- The exact body sent (the event's JSON).
    event            TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    -- Attempts finished.
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Bumped by each claim: only the latest claim's result is recorded.
    claim            INTEGER NOT NULL DEFAULT 0,
    -- Pending: when the next attempt is due (or the lease of one under way ends).
    next_attempt_at  INTEGER,
    -- The start of the retry window (creation, or the last redelivery).
    retry_from       INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (tenant, endpoint_id, id);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
    WHERE status <> 'pending';

-- The id of the last event fanned out: a restart resumes after it, losing and doubling
-- nothing. Starts at the newest event stored here (none are owed to endpoints that do not
-- exist yet).
CREATE TABLE webhook_cursor (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_event_id INTEGER NOT NULL
);
INSERT INTO webhook_cursor (id, last_event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;
