//! The router and the middleware around it.

use axum::{
    Router,
    middleware::{from_fn, from_fn_with_state},
    routing::{get, post},
};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    admin_keys, audit, error, events, health, keys, metrics, request_id, state::AppState, tenants,
    verify,
};

const TENANTS: &str = "/v1/tenants";
const TENANT: &str = "/v1/tenants/{tenant}";
const KEYS: &str = "/v1/tenants/{tenant}/keys";
const KEY: &str = "/v1/tenants/{tenant}/keys/{key_id}";
const KEY_ROLL: &str = "/v1/tenants/{tenant}/keys/{key_id}/roll";
const KEY_REVOKE: &str = "/v1/tenants/{tenant}/keys/{key_id}/revoke";
const AUDIT: &str = "/v1/tenants/{tenant}/audit";
const ADMIN_KEYS: &str = "/v1/admin-keys";
const ADMIN_KEY_REVOKE: &str = "/v1/admin-keys/{admin_key_id}/revoke";
const EVENTS: &str = "/v1/events";
const VERIFY: &str = "/v1/verify";
const HEALTHZ: &str = "/healthz";
const READYZ: &str = "/readyz";
const METRICS: &str = "/metrics";

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

/// Builds the application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(TENANTS, post(tenants::create).get(tenants::list))
        .route(TENANT, get(tenants::get).patch(tenants::update))
        .route(KEYS, post(keys::create).get(keys::list))
        .route(KEY, get(keys::get).patch(keys::update))
        .route(KEY_ROLL, post(keys::roll))
        .route(KEY_REVOKE, post(keys::revoke))
        .route(AUDIT, get(audit::api::list))
        .route(ADMIN_KEYS, get(admin_keys::list).post(admin_keys::create))
        .route(ADMIN_KEY_REVOKE, post(admin_keys::revoke))
        .merge(events::webhooks::routes())
        .route(EVENTS, get(events::sse::stream))
        .route(VERIFY, post(verify::verify))
        .route(HEALTHZ, get(health::healthz))
        .route(READYZ, get(health::readyz))
        .route(METRICS, get(metrics::handler))
        .route_layer(from_fn_with_state(state.clone(), audit::request::layer))
        .route_layer(from_fn_with_state(state.clone(), metrics::layer))
        .fallback(error::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(CatchPanicLayer::custom(
            portcullis_http::edge::panic_response,
        ))
        .layer(from_fn(request_id::layer))
        .with_state(state)
}
