//! A refusal of the gateway: the uniform JSON error, the decision label of the metrics, and the
//! headers to add (`Retry-After`, the `RateLimit` headers).
use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header::RETRY_AFTER},
    response::{IntoResponse, Response},
};

use portcullis_http::error::ApiError;

/// A refusal: the error, the decision label for metrics, and headers to add.
pub(super) struct Refusal {
    pub(super) error: ApiError,
    pub(super) decision: &'static str,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    pub(super) fn new(decision: &'static str, error: ApiError) -> Self {
        Self {
            error,
            decision,
            headers: Vec::new(),
        }
    }

    pub(super) fn into_response(self) -> Response {
        let mut resp = self.error.into_response();
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

pub(super) fn refuse(
    decision: &'static str,
    status: StatusCode,
    code: &'static str,
    msg: &'static str,
) -> Refusal {
    Refusal::new(decision, ApiError::new(status, code, msg))
}

/// A 429 with `Retry-After: wait` (at least 1).
pub(super) fn too_many(
    decision: &'static str,
    code: &'static str,
    msg: &'static str,
    wait: u64,
) -> Refusal {
    let mut r = refuse(decision, StatusCode::TOO_MANY_REQUESTS, code, msg);
    r.headers
        .push((RETRY_AFTER, HeaderValue::from(wait.max(1))));
    r
}
