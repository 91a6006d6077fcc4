//! The router and the middleware around it.
use std::any::Any;

use axum::{
    Router,
    middleware::{from_fn, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{error, health, keys, metrics, request_id, state::AppState, tenants, verify};

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    error::ApiError::internal("handler panicked").into_response()
}

/// Builds the application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/v1/tenants/{tenant}",
            get(tenants::get).patch(tenants::update),
        )
        .route(
            "/v1/tenants/{tenant}/keys",
            post(keys::create).get(keys::list),
        )
        .route(
            "/v1/tenants/{tenant}/keys/{key_id}",
            get(keys::get).patch(keys::update),
        )
        .route("/v1/tenants/{tenant}/keys/{key_id}/roll", post(keys::roll))
        .route(
            "/v1/tenants/{tenant}/keys/{key_id}/revoke",
            post(keys::revoke),
        )
        .route("/v1/verify", post(verify::verify))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::handler))
        .route_layer(from_fn_with_state(state.clone(), metrics::layer))
        .fallback(error::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn(request_id::layer))
        .with_state(state)
}
