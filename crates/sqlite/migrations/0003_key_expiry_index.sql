-- The expiry notices (`key.expiring`, `key.expired`) read keys by expiry across tenants.
CREATE INDEX api_keys_by_expiry ON api_keys (expires_at, id)
    WHERE revoked_at IS NULL AND expires_at IS NOT NULL;
