//! The router and the middleware around it.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{ConnectInfo, Request},
    middleware::from_fn_with_state,
    response::Response,
    routing::{get, post},
};
use tower::ServiceExt as _;

use crate::{
    admin_keys, audit, error, events, health, keys, metrics, record, request_id, state::AppState,
    tenants, verify,
};

use crate::{metrics::VerifyHandles, routes::*};

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
        .route_layer(from_fn_with_state(state.clone(), record::layer))
        .route_layer(from_fn_with_state(state.clone(), metrics::layer))
        .fallback(error::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

/// What the API listener serves: the router behind the request edge (its id, the refusal of
/// keys in URLs, the panic guard; [`request_id::around`]), each request with the client's
/// address as `ConnectInfo<SocketAddr>`. `POST /v1/verify`, the API's hot path, is answered
/// without the router ([`verify::direct`]).
#[derive(Debug, Clone)]
pub struct Api {
    state: AppState,
    router: Router,
    verify: Arc<VerifyHandles>,
}

impl Api {
    pub fn new(state: AppState) -> Self {
        Self {
            router: router(state.clone()),
            verify: Arc::new(VerifyHandles::of(&state)),
            state,
        }
    }
}

impl portcullis_http::listen::Serve for Api {
    fn serve(
        &self,
        req: Request,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Response> + Send + use<> {
        let fast = req.method() == axum::http::Method::POST && req.uri().path() == VERIFY;
        let (state, router, handles) =
            (self.state.clone(), self.router.clone(), self.verify.clone());
        request_id::around(req, move |mut req| async move {
            if fast {
                return verify::direct(state, &handles, req, peer).await;
            }
            req.extensions_mut().insert(ConnectInfo(peer));
            match router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        })
    }
}
