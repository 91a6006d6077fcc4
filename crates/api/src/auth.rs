//! Credentials: extraction from headers, resolution through the cache, and the admin extractor.
//!
//! A key is accepted only as `Authorization: Bearer …` or `X-API-Key: …`, with an optional
//! `X-Tenant-Id`. Unknown, malformed, revoked and expired keys all get the same 401
//! `invalid_api_key`; the precise reason goes to the log (with the key's non-secret hint).
use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, StatusCode, request::Parts},
};
use portcullis_core::{hash::KeyHash, model::AdminKey, scope::Scope, tenant::TenantId};

use portcullis_http::credential::presented;
pub use portcullis_http::credential::{X_API_KEY, X_TENANT_ID, credential, tenant_header};
pub use portcullis_service::admission::admin_now;
use portcullis_service::admission::{self, AdmittedAdmin, Refusal};

use crate::{
    error::ApiError,
    record::{self, AuditSlot, Facts},
    state::AppState,
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
        let mut facts = Facts::default();
        let admin = Admin::authenticate(state, &parts.headers, &mut facts).await;
        if let Some(slot) = &slot {
            slot.with(|f| f.merge(facts));
        }
        admin.map(|a| Admin { audit: slot, ..a })
    }
}

impl Admin {
    /// Authenticates the admin key `headers` present, noting in `facts` who it is, or why it
    /// failed (an authentication failure is also recorded as an `auth.failure` record).
    pub async fn authenticate(
        state: &AppState,
        headers: &HeaderMap,
        facts: &mut Facts,
    ) -> Result<Self, ApiError> {
        let presented = match presented(headers) {
            Ok(p) => p,
            Err(e) => {
                record_failure(state, facts, e.code, None, None);
                return Err(e);
            }
        };
        let admitted = match admission::admin(state, presented).await {
            Ok(a) => a,
            Err(Refusal::Unauthenticated(f)) => {
                record_failure(state, facts, f.reason, f.tenant.as_ref(), f.hint);
                return Err(ApiError::invalid_api_key());
            }
            Err(r) => return Err(r.into()),
        };
        let AdmittedAdmin { key, hash, tenant } = admitted;
        facts.auth = Some("success");
        facts.actor = Some(key.clone());
        facts.tenant = key.tenant_id.clone().or_else(|| tenant.clone());
        if let (Some(t), Some(bound)) = (&tenant, &key.tenant_id)
            && t != bound
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_mismatch",
                "X-Tenant-Id does not match the key's tenant",
            ));
        }
        Ok(Admin {
            key,
            hash,
            tenant_header: tenant,
            audit: None,
        })
    }
}

/// An admin authentication failure's audit facts: on the request's record (its reason) and as
/// an `auth.failure` record of its own.
fn record_failure(
    state: &AppState,
    facts: &mut Facts,
    reason: &'static str,
    tenant: Option<&TenantId>,
    hint: Option<String>,
) {
    facts.auth = Some("failure");
    facts.tenant = facts.tenant.take().or_else(|| tenant.cloned());
    facts.auth_failure = Some(reason);
    state.audit.record(record::auth_failure(
        state.clock.precise_now(),
        tenant,
        reason,
        hint,
        crate::request_id::current(),
    ));
}

impl Admin {
    /// Requires an admin scope, e.g. `keys:write`.
    pub fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        /// The admin scopes, parsed once.
        static BUILT_IN: std::sync::LazyLock<Vec<Scope>> = std::sync::LazyLock::new(|| {
            portcullis_core::scope::ADMIN_SCOPES
                .iter()
                .filter_map(|s| Scope::parse(s))
                .collect()
        });
        let parsed;
        let needed = match BUILT_IN.iter().find(|s| s.as_str() == scope) {
            Some(s) => s,
            None => {
                parsed = Scope::parse(scope)
                    .ok_or_else(|| ApiError::internal("invalid built-in scope"))?;
                &parsed
            }
        };
        if self.key.scopes.iter().any(|s| s.covers(needed)) {
            Ok(())
        } else {
            Err(ApiError::insufficient_scope(scope))
        }
    }

    /// Requires access to `tenant`: a tenant-bound key sees other tenants as not existing, and a
    /// request naming a tenant in `X-Tenant-Id` may not act on another one.
    pub fn tenant(&self, tenant: &str) -> Result<TenantId, ApiError> {
        // The tenant named is most often the key's own or the header's: share its text.
        let held = [self.key.tenant_id.as_ref(), self.tenant_header.as_ref()]
            .into_iter()
            .flatten()
            .find(|held| held.as_str() == tenant);
        let t = match held {
            Some(held) => held.clone(),
            None => TenantId::parse(tenant).map_err(|_| ApiError::not_found())?,
        };
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
