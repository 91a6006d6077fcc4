//! The route templates of the API: the router is built from them, and the metrics and audit
//! records label requests by them (never by the raw path, which would explode labels).
use crate::events;

pub const TENANTS: &str = "/v1/tenants";
pub const TENANT: &str = "/v1/tenants/{tenant}";
pub const KEYS: &str = "/v1/tenants/{tenant}/keys";
pub const KEY: &str = "/v1/tenants/{tenant}/keys/{key_id}";
pub const KEY_ROLL: &str = "/v1/tenants/{tenant}/keys/{key_id}/roll";
pub const KEY_REVOKE: &str = "/v1/tenants/{tenant}/keys/{key_id}/revoke";
pub const AUDIT: &str = "/v1/tenants/{tenant}/audit";
pub const ADMIN_KEYS: &str = "/v1/admin-keys";
pub const ADMIN_KEY_REVOKE: &str = "/v1/admin-keys/{admin_key_id}/revoke";
pub const EVENTS: &str = "/v1/events";
pub const VERIFY: &str = "/v1/verify";
pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const METRICS: &str = "/metrics";

/// Every route template; the metrics label requests by these.
pub const ROUTES: [&str; 19] = [
    TENANTS,
    TENANT,
    KEYS,
    KEY,
    KEY_ROLL,
    KEY_REVOKE,
    AUDIT,
    ADMIN_KEYS,
    ADMIN_KEY_REVOKE,
    EVENTS,
    VERIFY,
    HEALTHZ,
    READYZ,
    METRICS,
    events::webhooks::WEBHOOKS,
    events::webhooks::WEBHOOK,
    events::webhooks::WEBHOOK_ROLL,
    events::webhooks::DELIVERIES,
    events::webhooks::REDELIVER,
];
