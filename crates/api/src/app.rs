//! The router and the middleware around it.

use axum::{
    Router,
    middleware::{from_fn, from_fn_with_state},
    routing::{get, post},
};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    admin_keys, audit, error, events, health, keys, metrics, record, request_id, state::AppState,
    tenants, verify,
};

use crate::routes::*;

/// Builds the application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
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
        .route_layer(from_fn_with_state(state.clone(), record::layer))
        .route_layer(from_fn_with_state(state.clone(), metrics::layer))
        .fallback(error::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state);
    // The request-id edge and the panic guard wrap the whole router once: layered onto the
    // router, they would wrap every route, and each request would clone them with it.
    let edge = tower::ServiceBuilder::new()
        .layer(from_fn(request_id::layer))
        .layer(CatchPanicLayer::custom(
            portcullis_http::edge::panic_response,
        ))
        .service(api);
    Router::new().fallback_service(edge)
}
