//! The credential of a request: `Authorization: Bearer …` or `X-API-Key: …` (one of them, or
//! both with the same key), and the optional `X-Tenant-Id`. A key is never accepted anywhere
//! else (see [`crate::edge::key_in_url`]).
use axum::http::{HeaderMap, HeaderName, StatusCode, header::AUTHORIZATION};
use portcullis_core::{SecretString, tenant::TenantId};

use portcullis_service::admission::{InvalidTenantHeader, Presented};

use crate::error::ApiError;

pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");

/// Reads the credential from `Authorization: Bearer` or `X-API-Key`.
pub fn credential(headers: &HeaderMap) -> Result<SecretString, ApiError> {
    let one = |name: &HeaderName| -> Result<Option<&str>, ApiError> {
        let mut values = headers.get_all(name).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_request(
                "ambiguous_credential",
                "send one credential header, once",
            ));
        }
        Ok(first.map(|v| v.to_str().unwrap_or("")))
    };
    let bearer = match one(&AUTHORIZATION)? {
        None => None,
        Some(v) => {
            let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing_credential",
                    "use Authorization: Bearer <key> or X-API-Key: <key>",
                ));
            }
            Some(token.trim())
        }
    };
    let x_key = one(&X_API_KEY)?.map(str::trim);
    match (bearer, x_key) {
        (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(
            "ambiguous_credential",
            "Authorization and X-API-Key hold different keys",
        )),
        (Some(k), _) | (None, Some(k)) if !k.is_empty() => Ok(SecretString::from(k.to_owned())),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_credential",
            "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>",
        )),
    }
}

/// The credential of a request as the admission pipeline takes it: the key (an error answer
/// when there is none, or two different ones) and `X-Tenant-Id` (checked by the pipeline once
/// the key is known to be alive).
pub fn presented(headers: &HeaderMap) -> Result<Presented, ApiError> {
    Ok(Presented {
        secret: credential(headers)?,
        tenant: tenant_header(headers).map_err(|_| InvalidTenantHeader),
    })
}

/// Reads the optional `X-Tenant-Id`.
pub fn tenant_header(headers: &HeaderMap) -> Result<Option<TenantId>, ApiError> {
    match headers.get(&X_TENANT_ID) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| TenantId::parse(s).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_tenant_header",
                    "X-Tenant-Id is not a valid tenant id",
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use portcullis_core::ExposeSecret;

    fn h(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append((*k).clone(), HeaderValue::from_str(v).expect("value"));
        }
        m
    }

    #[test]
    fn credential_sources() {
        assert_eq!(
            credential(&h(&[(&AUTHORIZATION, "Bearer abc")]))
                .expect("ok")
                .expose_secret(),
            "abc"
        );
        assert_eq!(
            credential(&h(&[(&AUTHORIZATION, "bearer  abc ")]))
                .expect("ok")
                .expose_secret(),
            "abc"
        );
        assert_eq!(
            credential(&h(&[(&X_API_KEY, "abc")]))
                .expect("ok")
                .expose_secret(),
            "abc"
        );
        assert_eq!(
            credential(&h(&[(&AUTHORIZATION, "Bearer abc"), (&X_API_KEY, "abc")]))
                .expect("ok")
                .expose_secret(),
            "abc"
        );
        assert_eq!(
            credential(&h(&[(&AUTHORIZATION, "Bearer abc"), (&X_API_KEY, "xyz")]))
                .err()
                .map(|e| e.code),
            Some("ambiguous_credential")
        );
        assert_eq!(
            credential(&h(&[(&X_API_KEY, "a"), (&X_API_KEY, "b")]))
                .err()
                .map(|e| e.code),
            Some("ambiguous_credential")
        );
        assert_eq!(
            credential(&h(&[(&AUTHORIZATION, "Basic abc")]))
                .err()
                .map(|e| e.code),
            Some("missing_credential")
        );
        assert_eq!(
            credential(&h(&[(&AUTHORIZATION, "Bearer ")]))
                .err()
                .map(|e| e.code),
            Some("missing_credential")
        );
        assert_eq!(
            credential(&HeaderMap::new()).err().map(|e| e.code),
            Some("missing_credential")
        );
    }

    #[test]
    fn tenant_headers() {
        assert_eq!(
            tenant_header(&h(&[(&X_TENANT_ID, "acme")]))
                .expect("ok")
                .map(|t| t.to_string()),
            Some("acme".into())
        );
        assert_eq!(
            tenant_header(&h(&[(&X_TENANT_ID, "A!")]))
                .err()
                .map(|e| e.code),
            Some("invalid_tenant_header")
        );
    }
}
