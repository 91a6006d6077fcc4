-- portcullis schema, version 4: a tenant's ceilings, set by a root admin.
-- allowed_scopes: JSON TEXT array of scope patterns every scope of the tenant's keys must be
-- within; NULL means no ceiling. max_key_rate_limit: JSON TEXT {"requests": n, "per_seconds": n,
-- "burst": n} a key's own limit may not exceed; NULL means no ceiling.

ALTER TABLE tenants ADD COLUMN allowed_scopes TEXT
    CHECK (allowed_scopes IS NULL OR (json_valid(allowed_scopes) AND json_type(allowed_scopes) = 'array'));

ALTER TABLE tenants ADD COLUMN max_key_rate_limit TEXT
    CHECK (max_key_rate_limit IS NULL OR json_valid(max_key_rate_limit));
