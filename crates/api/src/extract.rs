//! axum's `Path` and `Query` with rejections turned into [`ApiError`] (stable codes, no
//! internal detail).
use axum::extract::FromRequestParts;

use crate::error::ApiError;

/// Path parameters; a malformed one answers 404 `not_found`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; an unknown or malformed one answers 400 `invalid_query`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
