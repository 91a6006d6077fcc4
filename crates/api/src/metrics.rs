//! `GET /metrics`, and the API's per-request counters and latency by route template; the
//! handles themselves are the service's ([`portcullis_service::metrics`]).
use axum::{
    extract::{MatchedPath, Request, State},
    http::{Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
pub use portcullis_service::metrics::*;

use crate::state::AppState;

/// The label of a matched route: one of the router's templates (no allocation per request, and
/// the label set stays bounded).
fn route_label(path: Option<&MatchedPath>) -> &'static str {
    path.and_then(|p| crate::routes::ROUTES.iter().find(|r| **r == p.as_str()))
        .copied()
        .unwrap_or("other")
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Counts every request by its route template (never the raw path, which would explode labels).
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let route = route_label(req.extensions().get::<MatchedPath>());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    observe(
        &state,
        route,
        method,
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}

/// Counts one answered request of `route` (a template of [`crate::routes`]) and its latency.
pub fn observe(
    state: &AppState,
    route: &'static str,
    method: &'static str,
    status: u16,
    elapsed: std::time::Duration,
) {
    let m = &state.metrics;
    m.http_duration
        .get_or_create(&RouteLabel { route })
        .observe(elapsed.as_secs_f64());
    m.http_requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status,
        })
        .inc();
    tracing::debug!(
        method,
        route,
        status,
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
}

/// The series `POST /v1/verify` records on its common path, resolved once ([`crate::app::Api`]):
/// its latency, its 200 answers and its `VALID` decisions.
#[derive(Debug, Clone)]
pub struct VerifyHandles {
    duration: prometheus_client::metrics::histogram::Histogram,
    ok: prometheus_client::metrics::counter::Counter,
    pub valid: prometheus_client::metrics::counter::Counter,
}

impl VerifyHandles {
    pub fn of(state: &AppState) -> Self {
        let m = &state.metrics;
        let route = crate::routes::VERIFY;
        Self {
            duration: m.http_duration.get_or_create(&RouteLabel { route }).clone(),
            ok: m
                .http_requests
                .get_or_create(&HttpLabels {
                    route,
                    method: "POST",
                    status: 200,
                })
                .clone(),
            valid: m
                .verify_decisions
                .get_or_create(&CodeLabel { code: "VALID" })
                .clone(),
        }
    }

    /// [`observe`] for a `POST /v1/verify`, through the handles where they apply.
    pub fn observe(&self, state: &AppState, status: u16, elapsed: std::time::Duration) {
        if status != 200 {
            return observe(state, crate::routes::VERIFY, "POST", status, elapsed);
        }
        self.duration.observe(elapsed.as_secs_f64());
        self.ok.inc();
        tracing::debug!(
            method = "POST",
            route = crate::routes::VERIFY,
            status,
            latency_us = elapsed.as_micros() as u64,
            "request"
        );
    }
}

pub async fn handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
