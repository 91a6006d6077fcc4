-- portcullis schema, version 2: rate limits of keys and tenants.
-- A limit is JSON TEXT {"requests": n, "per_seconds": n, "burst": n}; NULL means none (a key
-- without its own limit falls under the route's policy; a tenant without one is not limited as a
-- whole).

ALTER TABLE tenants ADD COLUMN rate_limit TEXT CHECK (rate_limit IS NULL OR json_valid(rate_limit));

ALTER TABLE api_keys ADD COLUMN rate_limit TEXT CHECK (rate_limit IS NULL OR json_valid(rate_limit));
