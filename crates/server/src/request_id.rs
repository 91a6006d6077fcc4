//! Request ids: a well-formed incoming `X-Request-Id` is kept, otherwise one is generated. The id
//! is returned in the response header, in every error body, and on every log line of the request.
use std::sync::Arc;

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.to_string()).ok()
}

/// 1 to 128 characters of `[A-Za-z0-9._:-]`.
pub fn well_formed(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

pub async fn layer(mut req: Request, next: Next) -> Response {
    let id: Arc<str> = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(portcullis_core::ids::new_unordered_id("req")));
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(HEADER.clone(), v);
    }
    // The span names the path, never the query string (which may hold a misplaced key).
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let header = HeaderValue::from_str(&id).ok();
    let mut resp = CURRENT.scope(id, next.run(req).instrument(span)).await;
    if let Some(h) = header {
        resp.headers_mut().insert(HEADER.clone(), h);
    }
    resp
}
