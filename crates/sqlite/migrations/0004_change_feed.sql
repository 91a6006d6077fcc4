-- The change feed (`portcullis_store::ChangeFeed`): one row per change that a reader may hold in
-- a cache, written in the change's transaction. Readers poll MAX(id) (the rowid: one b-tree
-- step) and read the rows after the last id they saw. AUTOINCREMENT: an id is never reused,
-- even after the oldest rows are pruned.
CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'key' | 'tenant' | 'admin_key'
    kind TEXT NOT NULL,
    tenant_id TEXT,
    object_id TEXT NOT NULL
);
