-- portcullis schema, version 1.
-- Timestamps are INTEGER unix seconds (UTC); lists and objects are JSON TEXT; key hashes are
-- HMAC-SHA256 values (BLOB of 32 bytes). No table holds a key's secret.

CREATE TABLE tenants (
    id                       TEXT    NOT NULL PRIMARY KEY,
    name                     TEXT    NOT NULL,
    status                   TEXT    NOT NULL CHECK (status IN ('active', 'suspended')),
    key_prefix               TEXT    NOT NULL,
    max_key_lifetime_seconds INTEGER,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    environment  TEXT    NOT NULL CHECK (environment IN ('live', 'test')),
    name         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,  -- JSON array of scope strings
    hint         TEXT    NOT NULL,
    ip_allowlist TEXT    NOT NULL,  -- JSON array of CIDR strings
    metadata     TEXT    NOT NULL,  -- JSON object
    external_id  TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;

-- Every key query names its tenant: (tenant_id, id) serves reads, listing in id order, and the
-- foreign key of key_secrets.
CREATE UNIQUE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);
CREATE INDEX api_keys_by_tenant_environment ON api_keys (tenant_id, environment, id);
CREATE INDEX api_keys_by_tenant_external_id ON api_keys (tenant_id, external_id, id)
    WHERE external_id IS NOT NULL;

-- The hashes a key resolves from: its current secret (expires_at NULL) and secrets rolled away
-- (usable until expires_at).
CREATE TABLE key_secrets (
    hash       BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    key_id     TEXT    NOT NULL,
    tenant_id  TEXT    NOT NULL,
    expires_at INTEGER,
    FOREIGN KEY (tenant_id, key_id) REFERENCES api_keys (tenant_id, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX key_secrets_by_key ON key_secrets (tenant_id, key_id);

CREATE TABLE admin_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    hash         BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    name         TEXT    NOT NULL,
    tenant_id    TEXT    REFERENCES tenants (id),  -- NULL: a global (root) admin key
    scopes       TEXT    NOT NULL,                 -- JSON array of scope strings
    hint         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;
