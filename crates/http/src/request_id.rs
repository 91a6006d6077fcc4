//! The edge of every request ([`around`]): its id (a well-formed incoming `X-Request-Id` is kept,
//! otherwise one is generated; it is returned in the response header, in every error body, and
//! on every log line of the request), the refusal of keys sent in the URL, and the panic guard.
use std::{future::Future, panic::AssertUnwindSafe, sync::Arc};

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    response::Response,
};
use futures_util::FutureExt as _;

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

pub use portcullis_service::request_id::{
    RequestId, current, current_shared, generate, scope_for_test, well_formed,
};
use portcullis_service::request_id::{scope, sync_scope};

/// The request's id and its header value: the client's, when well-formed (its header value is
/// reused), else a new one.
fn of(req: &Request) -> (RequestId, Option<HeaderValue>) {
    if let Some(v) = req.headers().get(&HEADER)
        && let Ok(s) = v.to_str()
        && well_formed(s)
    {
        return (RequestId::Given(Arc::from(s)), Some(v.clone()));
    }
    let id = generate();
    let header = id.with_str(|s| HeaderValue::from_str(s).ok());
    (id, header)
}

/// Handles `req` with `handle` as the request it is: under its id (every log line written
/// meanwhile carries it), refused before anything else sees it if its URL carries a key, and
/// answered with a plain 500 if `handle` panics. The id goes back in `X-Request-Id`; the request
/// carries it too, for the gateway to forward.
pub async fn around<F, Fut>(mut req: Request, handle: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let (id, header) = of(&req);
    let mut resp = if crate::edge::key_in_url(req.uri()) {
        sync_scope(id, crate::edge::key_in_url_response)
    } else {
        if let Some(h) = &header {
            req.headers_mut().insert(HEADER.clone(), h.clone());
        }
        // The handler's future lives on the heap: every wrapper around it, and the connection
        // that keeps the request's future, then moves a pointer, not kilobytes of state.
        let guarded = AssertUnwindSafe(Box::pin(handle(req))).catch_unwind();
        scope(id, guarded)
            .await
            .unwrap_or_else(crate::edge::panic_response)
    };
    if let Some(h) = header {
        resp.headers_mut().insert(HEADER.clone(), h);
    }
    resp
}
