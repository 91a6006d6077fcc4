//! Credentials: extraction from headers, resolution through the cache, and the admin extractor.
//!
//! A key is accepted only as `Authorization: Bearer …` or `X-API-Key: …`, with an optional
//! `X-Tenant-Id`. Unknown, malformed, revoked and expired keys all get the same 401
//! `invalid_api_key`; the precise reason goes to the log (with the key's non-secret hint).
use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderName, StatusCode, header::AUTHORIZATION, request::Parts},
    response::{IntoResponse, Response},
};
use portcullis_core::{
    ExposeSecret, SecretString,
    hash::KeyHash,
    key::{self, KeyKind},
    key_scan,
    model::AdminKey,
    scope::Scope,
    tenant::TenantId,
};

use crate::{
    audit::{self, request::AuditSlot},
    cache::{CachedAdmin, CachedKey, Entry},
    error::ApiError,
    metrics::{CodeLabel, ResultLabel},
    state::AppState,
    usage::TOUCH_EVERY_SECONDS,
};

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

/// Resolves a secret: format and checksum first (garbage never reaches the cache or the
/// store), then the cache, then the store.
pub async fn resolve(state: &AppState, secret: &str) -> Result<Entry, ApiError> {
    Ok(resolve_hashed(state, secret).await?.0)
}

/// [`resolve`], and the secret's hash (none for a malformed secret).
pub async fn resolve_hashed(
    state: &AppState,
    secret: &str,
) -> Result<(Entry, Option<KeyHash>), ApiError> {
    let Ok(parsed) = key::parse(secret) else {
        return Ok((Entry::Unknown, None));
    };
    let hash = state.pepper.hash(secret);
    let entry = match parsed.kind {
        KeyKind::Admin => lookup(state, hash, true).await?,
        KeyKind::Tenant(_) => lookup(state, hash, false).await?,
    };
    Ok((entry, Some(hash)))
}

/// The cache, then the store.
async fn lookup(state: &AppState, hash: KeyHash, admin: bool) -> Result<Entry, ApiError> {
    let lookups = &state.metrics.cache_lookups;
    if let Some(entry) = state.cache.get(&hash) {
        lookups.get_or_create(&ResultLabel { result: "hit" }).inc();
        return Ok(entry);
    }
    lookups.get_or_create(&ResultLabel { result: "miss" }).inc();
    let epoch = state.cache.epoch();
    let entry = if admin {
        state
            .store
            .find_admin_key(&hash)
            .await?
            .map_or(Entry::Unknown, |a| {
                Entry::Admin(Arc::new(CachedAdmin::new(a)))
            })
    } else {
        state
            .store
            .find_key(&hash)
            .await?
            .map_or(Entry::Unknown, |m| Entry::Key(Arc::new(CachedKey::new(m))))
    };
    state.cache.insert(hash, entry.clone(), epoch);
    Ok(entry)
}

/// The admin key record behind `hash` as it is now (after a change, the cache has dropped it
/// and this reads the store): `None` once it is gone or revoked.
pub async fn admin_now(state: &AppState, hash: KeyHash) -> Result<Option<Arc<AdminKey>>, ApiError> {
    let now = state.clock.now();
    Ok(match lookup(state, hash, true).await? {
        Entry::Admin(a) if a.key.revoked_at.is_none_or(|r| r > now) => Some(a.key.clone()),
        _ => None,
    })
}

/// An authenticated admin key, extracted from the request headers.
#[derive(Debug, Clone)]
pub struct Admin {
    pub key: Arc<AdminKey>,
    /// The hash of the presented secret (to look the key up again: [`admin_now`]).
    pub hash: KeyHash,
    /// `X-Tenant-Id`, when sent: the request then acts on that tenant only (for a tenant-bound
    /// key it has already been checked to be the key's own).
    pub tenant_header: Option<TenantId>,
    /// The request's audit facts (absent outside the API router).
    pub audit: Option<AuditSlot>,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let slot = parts.extensions.get::<AuditSlot>().cloned();
        let audit_failure = |reason: &'static str, tenant: Option<&TenantId>, hint| {
            if let Some(slot) = &slot {
                slot.with(|f| {
                    f.auth = Some("failure");
                    f.tenant = f.tenant.take().or_else(|| tenant.cloned());
                    f.data.insert("auth_failure".into(), reason.into());
                });
            }
            state.audit.record(audit::request::auth_failure(
                state.clock.precise_now(),
                tenant,
                reason,
                hint,
                crate::request_id::current(),
            ));
        };
        let secret = match credential(&parts.headers) {
            Ok(s) => s,
            Err(e) => {
                audit_failure(e.code, None, None);
                return Err(e);
            }
        };
        // Refused only once the key is known to be alive: a dead key is a 401 first.
        let tenant_header = tenant_header(&parts.headers);
        let reject = |reason: &'static str, owner: Option<&TenantId>| {
            state
                .metrics
                .auth_failures
                .get_or_create(&CodeLabel { code: reason })
                .inc();
            let hint = key::hint(secret.expose_secret());
            tracing::warn!(
                reason,
                key_hint = hint.as_deref().unwrap_or("(malformed)"),
                "admin authentication failed"
            );
            audit_failure(reason, owner, hint);
            ApiError::invalid_api_key()
        };
        let (entry, hash) = resolve_hashed(state, secret.expose_secret()).await?;
        let (cached, hash) = match (entry, hash) {
            (Entry::Admin(a), Some(h)) => (a, h),
            (Entry::Key(k), _) => {
                return Err(reject("not_an_admin_key", Some(&k.found.key.tenant_id)));
            }
            _ => return Err(reject("unknown_or_malformed", None)),
        };
        let now = state.clock.now();
        if cached.key.revoked_at.is_some_and(|r| r <= now) {
            return Err(reject("revoked", cached.key.tenant_id.as_ref()));
        }
        let tenant = tenant_header?;
        if let Some(slot) = &slot {
            slot.with(|f| {
                f.auth = Some("success");
                f.actor = Some(cached.key.id.clone());
                f.tenant = cached.key.tenant_id.clone().or_else(|| tenant.clone());
            });
        }
        if cached
            .used
            .should_touch(now.unix_timestamp(), TOUCH_EVERY_SECONDS)
        {
            state.usage.record(&cached.key.id, now);
        }
        let admin = cached.key.clone();
        if let (Some(t), Some(bound)) = (&tenant, &admin.tenant_id)
            && t != bound
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_mismatch",
                "X-Tenant-Id does not match the key's tenant",
            ));
        }
        Ok(Admin {
            key: admin,
            hash,
            tenant_header: tenant,
            audit: slot,
        })
    }
}

impl Admin {
    /// Requires an admin scope, e.g. `keys:write`.
    pub fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        let needed =
            Scope::parse(scope).ok_or_else(|| ApiError::internal("invalid built-in scope"))?;
        if self.key.scopes.iter().any(|s| s.covers(&needed)) {
            Ok(())
        } else {
            Err(ApiError::insufficient_scope(scope))
        }
    }

    /// Requires access to `tenant`: a tenant-bound key sees other tenants as not existing, and a
    /// request naming a tenant in `X-Tenant-Id` may not act on another one.
    pub fn tenant(&self, tenant: &str) -> Result<TenantId, ApiError> {
        let t = TenantId::parse(tenant).map_err(|_| ApiError::not_found())?;
        if !self.key.can_access(&t) {
            return Err(ApiError::not_found());
        }
        if self.tenant_header.as_ref().is_some_and(|h| *h != t) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_mismatch",
                "X-Tenant-Id names another tenant than the one in the path",
            ));
        }
        if let Some(slot) = &self.audit {
            slot.with(|f| f.tenant = Some(t.clone()));
        }
        Ok(t)
    }

    pub fn is_root(&self) -> bool {
        self.key.tenant_id.is_none()
    }

    pub fn require_root(&self) -> Result<(), ApiError> {
        if self.is_root() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "root_admin_required",
                "only a global admin key may do this",
            ))
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
