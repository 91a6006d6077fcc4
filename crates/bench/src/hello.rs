//! The baseline server of `bench-hello`: axum with nothing of portcullis. `POST /v1/verify`
//! reads the request body and answers a static JSON document of the shape and size of a real
//! verify answer; `GET /` and `GET /healthz` answer a short text.
use axum::{
    Router,
    body::Bytes,
    http::header,
    response::IntoResponse,
    routing::{get, post},
};

/// The shape and size of a `POST /v1/verify` answer for a valid key.
pub const VERIFY_ANSWER: &str = concat!(
    r#"{"valid":true,"code":"VALID","key_id":"key_01m890vfbe4sjh5frakerd7v9b","#,
    r#""tenant":"bench","environment":"live","name":"k1","scopes":["invoices:read"],"#,
    r#""metadata":{}}"#
);

async fn verify(_body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], VERIFY_ANSWER)
}

async fn hello() -> &'static str {
    "Hello, World!"
}

pub fn router() -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/healthz", get(hello))
        .route("/v1/verify", post(verify))
}
