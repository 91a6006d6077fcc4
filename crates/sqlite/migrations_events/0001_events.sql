-- Events (embedded backend): one row per event. AUTOINCREMENT: ids are never reused, also
-- after the retention purge deleted the newest rows' predecessors, so an id names one event
-- forever and `Last-Event-ID` stays meaningful.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Publishing the same message id again stores nothing.
    msg_id  TEXT NOT NULL UNIQUE,
    -- The tenant id, or '_system' for events of no tenant.
    tenant  TEXT NOT NULL,
    type    TEXT NOT NULL,
    -- Unix microseconds.
    time    INTEGER NOT NULL,
    data    TEXT NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant, id);
CREATE INDEX events_by_time ON events (time);
