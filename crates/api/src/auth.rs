//! Credentials: extraction from headers, resolution through the cache, and the admin extractor.
//!
//! A key is accepted only as `Authorization: Bearer …` or `X-API-Key: …`, with an optional
//! `X-Tenant-Id`. Unknown, malformed, revoked and expired keys all get the same 401
//! `invalid_api_key`; the precise reason goes to the log (with the key's non-secret hint).
use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
};
use portcullis_core::{
    ExposeSecret, hash::KeyHash, key, model::AdminKey, scope::Scope, tenant::TenantId,
};

pub use portcullis_http::credential::{X_API_KEY, X_TENANT_ID, credential, tenant_header};
pub use portcullis_service::admission::admin_now;
use portcullis_service::admission::resolve_hashed;

use crate::{
    audit::{self, request::AuditSlot},
    cache::Entry,
    error::ApiError,
    metrics::CodeLabel,
    state::AppState,
    usage::TOUCH_EVERY_SECONDS,
};

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
