//! The edge of every request: its id (a well-formed incoming `X-Request-Id` is kept, otherwise
//! one is generated; it is returned in the response header, in every error body, and on every log
//! line of the request), and the refusal of keys sent in the URL.
use std::sync::{
    Arc, LazyLock,
    atomic::{AtomicU64, Ordering},
};

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// The id of the request being handled, shared (no copy).
pub fn current_shared() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.to_string()).ok()
}

/// Runs `fut` as if it handled a request with id `id` (for tests of log output).
pub async fn scope_for_test<F: std::future::Future>(id: &str, fut: F) -> F::Output {
    CURRENT.scope(Arc::from(id), fut).await
}

/// 1 to 128 characters of `[A-Za-z0-9._:-]`, and no key in them (an id is echoed, logged,
/// forwarded and recorded: a key sent as one is replaced like any malformed id).
pub fn well_formed(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
        && !portcullis_core::key_scan::contains_key(v.as_bytes())
}

/// Generated ids: `req_` + a random prefix chosen at start + a counter. Unique per process start
/// without shared locks or a random draw per request.
fn generate() -> Arc<str> {
    static PREFIX: LazyLock<String> =
        LazyLock::new(|| portcullis_core::ids::new_unordered_id("req")[..18].to_owned());
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{}{n:010x}", *PREFIX))
}

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
    let mut resp = if crate::auth::key_in_url(req.uri()) {
        CURRENT.sync_scope(id, crate::auth::key_in_url_response)
    } else {
        // The method and path go to the per-request debug line, never the query string.
        CURRENT.scope(id, next.run(req)).await
    };
    if let Some(h) = header {
        resp.headers_mut().insert(HEADER.clone(), h);
    }
    resp
}
