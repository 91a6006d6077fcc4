//! The one error type every endpoint returns: a status, a stable code and a generic message, as
//! `{"error": {"code": "…", "message": "…", "request_id": "…"}}`. Nothing internal leaks: store
//! and I/O failures become `internal_error` and their detail goes to the log only.
use std::borrow::Cow;

use axum::{
    Json,
    extract::rejection::{PathRejection, QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use portcullis_core::error::ValidationError;
use portcullis_store::StoreError;
use serde_json::json;

use portcullis_service::request_id;

/// The stable code of an error answer, put in the response's extensions by
/// [`ApiError`]'s `IntoResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

pub use crate::codes::CODES;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 408 `body_timeout`: the client stopped sending its request body (see
    /// `connections.body_read_timeout_ms`).
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body stopped arriving; send it without long pauses",
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    pub fn invalid_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "the API key is not valid",
        )
    }

    pub fn insufficient_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this endpoint requires the scope {scope}"),
        )
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// An internal failure: logged with its detail, answered without it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; quote the request id when reporting it",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.code,
            "message": self.message,
            "request_id": request_id::current(),
        }});
        let mut resp = (self.status, Json(body)).into_response();
        // The audit record of the request takes its reason from here.
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let status = if e.is_forbidden() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found(),
            StoreError::Conflict => Self::new(
                StatusCode::CONFLICT,
                "tenant_exists",
                "a tenant with this id exists",
            ),
            StoreError::Revoked => {
                Self::new(StatusCode::CONFLICT, "key_revoked", "the key is revoked")
            }
            StoreError::Invalid(v) => v.into(),
            other => Self::internal(other),
        }
    }
}

impl From<portcullis_service::ops::OpError> for ApiError {
    fn from(e: portcullis_service::ops::OpError) -> Self {
        use portcullis_service::ops::OpError;
        match e {
            OpError::NotFound => Self::not_found(),
            OpError::TenantSuspended => Self::new(
                StatusCode::CONFLICT,
                "tenant_suspended",
                "the tenant is suspended",
            ),
            OpError::Invalid(v) => v.into(),
            OpError::Store(s) => s.into(),
            other => Self::internal(other),
        }
    }
}

impl From<portcullis_service::admission::Refusal> for ApiError {
    fn from(r: portcullis_service::admission::Refusal) -> Self {
        use portcullis_core::decision::DecisionCode;
        use portcullis_service::admission::Refusal;
        match r {
            Refusal::Unauthenticated(_) => Self::invalid_api_key(),
            Refusal::InvalidTenantHeader { .. } => Self::bad_request(
                "invalid_tenant_header",
                "X-Tenant-Id is not a valid tenant id",
            ),
            Refusal::Forbidden { code, .. } => {
                let (code, message) = match code {
                    DecisionCode::TenantMismatch => (
                        "tenant_mismatch",
                        "X-Tenant-Id names another tenant than the key's",
                    ),
                    DecisionCode::TenantSuspended => {
                        ("tenant_inactive", "the key's tenant is suspended")
                    }
                    DecisionCode::EnvironmentMismatch => (
                        "environment_mismatch",
                        "this route does not accept keys of this environment",
                    ),
                    DecisionCode::IpNotAllowed => (
                        "ip_not_allowed",
                        "the key may not be used from this address",
                    ),
                    _ => (
                        "insufficient_scope",
                        "the key lacks a scope this route requires",
                    ),
                };
                Self::new(StatusCode::FORBIDDEN, code, message)
            }
            Refusal::Store(e) => e.into(),
            other => Self::internal(format_args!("unmapped refusal {other:?}")),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::not_found()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(_: QueryRejection) -> Self {
        Self::bad_request("invalid_query", "a query parameter is unknown or malformed")
    }
}

/// Answer for paths that do not exist.
pub async fn fallback() -> ApiError {
    ApiError::not_found()
}

/// Answer for a known path with a method it does not have.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
    )
}
