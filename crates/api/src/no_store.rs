//! Answers that carry a secret (a key's or a webhook's, shown once): JSON that no cache keeps.
//!
//! Every handler that returns a secret returns it through [`SecretJson`], which adds
//! `Cache-Control: no-store` (and `Pragma: no-cache` for HTTP/1.0 caches), so that neither a
//! browser, nor a proxy between the operator and the admin API, nor a client library's HTTP
//! cache stores the one answer that holds the secret in plaintext.
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// The value of `Cache-Control` on an answer that carries a secret.
pub const NO_STORE: &str = "no-store";

/// A JSON answer holding a secret, with status `.0`, marked as not to be stored by any cache.
#[derive(Debug)]
pub struct SecretJson<T>(pub StatusCode, pub T);

impl<T: Serialize> IntoResponse for SecretJson<T> {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(self.1)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}
