//! The edge of every request, before any handler: a key sent in the URL is refused, a panic
//! becomes a plain 500, and what every request's record needs of its size. Shared by the API
//! and the gateway.
use std::any::Any;

use axum::{
    http::{StatusCode, header::CONTENT_LENGTH},
    response::{IntoResponse, Response},
};
use http_body::Body as _;
use portcullis_core::key_scan;

use crate::error::ApiError;

/// Query parameter names that are refused outright: keys never travel in URLs.
const KEY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "token",
    "access_token",
    "x-api-key",
    "secret",
];

/// Does the URL carry a key (a named parameter, or a well-formed key anywhere in the path or
/// the query, however percent-encoded: see [`portcullis_core::key_scan`])? Such requests are
/// refused before anything logs, records, routes or forwards them.
pub fn key_in_url(uri: &axum::http::Uri) -> bool {
    let named_param = uri.query().is_some_and(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q).map_or(true, |pairs| {
            pairs
                .iter()
                .any(|(k, _)| KEY_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p)))
        })
    });
    named_param
        || key_scan::url_contains_key(uri.path())
        || uri.query().is_some_and(key_scan::url_contains_key)
}

/// The answer to a request with a key in its URL.
pub fn key_in_url_response() -> Response {
    tracing::warn!("refused a request with an API key in the URL");
    ApiError::bad_request(
        "api_key_in_query",
        "API keys must not be sent in the URL; use Authorization: Bearer or X-API-Key, and roll the exposed key",
    )
    .into_response()
}

/// The answer of a handler that panicked: a 500 `internal_error`, nothing of the panic.
pub fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}

/// The answer while the audit log refuses requests (`fail_closed`).
pub fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the audit log cannot record requests right now; retry later",
    )
}

/// A request's body size: its `Content-Length`, when it has one.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A response's body size, when it is known before it is sent.
pub fn response_length(resp: &Response) -> Option<u64> {
    declared_length(resp.headers()).or_else(|| resp.body().size_hint().exact())
}
