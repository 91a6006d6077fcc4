//! The edge of every request: its id (a well-formed incoming `X-Request-Id` is kept, otherwise
//! one is generated; it is returned in the response header, in every error body, and on every log
//! line of the request), and the refusal of keys sent in the URL.
use std::sync::Arc;

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

pub use portcullis_service::request_id::{
    current, current_shared, generate, scope_for_test, well_formed,
};
use portcullis_service::request_id::{scope, sync_scope};

pub async fn layer(mut req: Request, next: Next) -> Response {
    let id: Arc<str> = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map(Arc::from)
        .unwrap_or_else(generate);
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(HEADER.clone(), v);
    }
    let header = HeaderValue::from_str(&id).ok();
    // Every log line written while the request is handled carries `id` (see `logging`).
    let mut resp = if crate::edge::key_in_url(req.uri()) {
        sync_scope(id, crate::edge::key_in_url_response)
    } else {
        // The method and path go to the per-request debug line, never the query string.
        scope(id, next.run(req)).await
    };
    if let Some(h) = header {
        resp.headers_mut().insert(HEADER.clone(), h);
    }
    resp
}
