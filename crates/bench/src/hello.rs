//! The baseline server of `bench-hello`: axum with nothing of portcullis. `POST /v1/verify`
//! reads the request body and answers a static JSON document of the shape and size of a real
//! verify answer; `GET /` and `GET /healthz` answer a short text; `GET /bytes/{n}` answers `n`
//! bytes of text (at most [`MAX_BYTES`]), for requests whose answers are not tiny.
use axum::{
    Router,
    body::Bytes,
    extract::Path,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};

/// The largest answer of `GET /bytes/{n}`.
pub const MAX_BYTES: usize = 1 << 20;

static TEXT: [u8; MAX_BYTES] = [b'x'; MAX_BYTES];

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

async fn bytes(Path(n): Path<usize>) -> Result<Bytes, StatusCode> {
    TEXT.get(..n)
        .map(Bytes::from_static)
        .ok_or(StatusCode::BAD_REQUEST)
}

pub fn router() -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/healthz", get(hello))
        .route("/bytes/{n}", get(bytes))
        .route("/v1/verify", post(verify))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_answers_n_bytes_up_to_the_limit() {
        assert_eq!(bytes(Path(5)).await, Ok(Bytes::from_static(b"xxxxx")));
        assert_eq!(bytes(Path(MAX_BYTES)).await.map(|b| b.len()), Ok(MAX_BYTES));
        assert_eq!(
            bytes(Path(MAX_BYTES + 1)).await,
            Err(StatusCode::BAD_REQUEST)
        );
    }
}
