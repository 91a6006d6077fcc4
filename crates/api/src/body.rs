//! JSON request bodies: size-limited, `application/json` only, unknown fields rejected, and
//! errors that never echo the client's values (which may hold a key).
use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Request},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
};
use serde::{Deserialize, de::DeserializeOwned};

use crate::{error::ApiError, state::AppState};

/// A JSON body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// A JSON body of type `T`, or `T::default()` when the body is empty.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

async fn read(headers: &HeaderMap, body: Body, state: &AppState) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {} bytes", state.max_body_bytes),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|e| {
            if crate::listen::body::is_body_timeout(&e) {
                ApiError::body_timeout()
            } else {
                too_large()
            }
        })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses JSON, mapping errors to stable codes. Messages name a field only when the name is a
/// plain identifier, and never quote a value.
pub fn parse<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                let text = e.to_string();
                let field = text.split('`').nth(1).filter(|f| {
                    f.len() <= 64 && f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                });
                let message = match (
                    text.starts_with("unknown field"),
                    text.starts_with("missing field"),
                    field,
                ) {
                    (true, _, Some(f)) => format!("unknown field `{f}`"),
                    (_, true, Some(f)) => format!("missing field `{f}`"),
                    _ => format!(
                        "a field has a value of the wrong type or form (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                };
                ApiError::bad_request("invalid_request", message)
            }
            _ => ApiError::bad_request(
                "invalid_json",
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            ),
        }
    })
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send Content-Type: application/json",
    )
}

/// The JSON body of a request with `headers`, to [`parse`]: `application/json`, within the
/// size limit.
pub async fn json_bytes(
    headers: &HeaderMap,
    body: Body,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    if !is_json(headers) {
        return Err(unsupported_media_type());
    }
    read(headers, body, state).await
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = json_bytes(&parts.headers, body, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = read(&parts.headers, body, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !is_json(&parts.headers) {
            return Err(unsupported_media_type());
        }
        parse(&bytes).map(OptionalJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::request::CreateKey;

    #[test]
    fn errors_do_not_echo_values() {
        let secret = "sk_live_ThisMustNeverBeEchoedBack000000000000";
        let e =
            parse::<CreateKey>(format!(r#"{{"name": 5, "environment": "{secret}"}}"#).as_bytes())
                .expect_err("error");
        assert_eq!(e.code, "invalid_request");
        assert!(!e.message.contains(secret));
        let e = parse::<CreateKey>(format!(r#"{{"{secret}": 1}}"#).as_bytes()).expect_err("error");
        assert!(!e.message.contains(secret));
        let e = parse::<CreateKey>(br#"{"name":"x","environment":"live","bogus":1}"#)
            .expect_err("error");
        assert_eq!(e.message, "unknown field `bogus`");
        let e = parse::<CreateKey>(b"{nope").expect_err("error");
        assert_eq!(e.code, "invalid_json");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            parse::<serde_json::Value>(deep.as_bytes())
                .err()
                .map(|e| e.code),
            Some("invalid_json")
        );
    }
}
