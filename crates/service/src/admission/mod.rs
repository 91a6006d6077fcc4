//! The admission pipeline, one for the admin API, the verify API and the gateway:
//! credential → key resolution ([`resolve`]) → decision ([`portcullis_core::decision`]) → the
//! gateway's limits. Each step returns what it admitted or a typed [`Refusal`] carrying the
//! facts its audit record needs; each surface maps a refusal to its answer in one place
//! (`From<Refusal> for ApiError` in `portcullis-http`, the gateway's own refusal).
//!
//! The pipeline knows nothing of HTTP: a surface reads the credential from its request into a
//! [`Presented`] and hands it in. An authentication failure is counted, logged (with the key's
//! non-secret hint, never the secret) and told to the anomaly detector here, alike for every
//! surface.
use std::{net::IpAddr, sync::Arc};

use portcullis_core::{
    ExposeSecret, OffsetDateTime, SecretString,
    decision::{self, DecisionCode, Requirements, Subject},
    hash::KeyHash,
    key,
    model::AdminKey,
    scope::Scope,
    tenant::{Environment, TenantId},
};
use portcullis_store::StoreError;

use crate::{
    cache::{CachedKey, Entry, UseMarker},
    state::AppState,
    usage::TOUCH_EVERY_SECONDS,
};

pub mod resolve;

pub use resolve::{admin_now, resolve, resolve_hashed};

/// A credential as a request presented it.
#[derive(Debug)]
pub struct Presented {
    pub secret: SecretString,
    /// `X-Tenant-Id`: absent, a tenant, or malformed (`Err`, refused only once the key is known to
    /// be alive: a dead key is a 401 first).
    pub tenant: Result<Option<TenantId>, InvalidTenantHeader>,
}

/// `X-Tenant-Id` was not a valid tenant id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTenantHeader;

/// The surface a credential was presented to (the label of its failure in logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The admin and verify API (admin keys).
    Admin,
    /// The gateway (tenant keys).
    Gateway,
}

/// Why a credential was not admitted.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// The credential names no live key this surface takes: answered 401 `invalid_api_key`
    /// whatever the precise reason, which goes to the audit log and the operator's log.
    Unauthenticated(Failure),
    /// `X-Tenant-Id` is malformed (400 `invalid_tenant_header`); `key`: the live tenant key
    /// presented with it (its tenant's chain gets the record).
    InvalidTenantHeader { key: Option<Arc<CachedKey>> },
    /// A live key that may not make this request (403; the decision code says why).
    Forbidden {
        code: DecisionCode,
        key: Arc<CachedKey>,
    },
    /// The store could not be read (500, detail in the log only).
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// An authentication failure, as its audit record keeps it.
#[derive(Debug)]
pub struct Failure {
    /// The precise reason: `unknown_or_malformed`, `revoked`, `expired`, `not_an_admin_key`,
    /// `admin_key_on_gateway`.
    pub reason: &'static str,
    /// The tenant of the key, when the key is known (its chain gets the record).
    pub tenant: Option<TenantId>,
    /// The key's non-secret hint (`None` for a credential that is not a well-formed key).
    pub hint: Option<String>,
    /// The tenant key behind a revoked or expired credential.
    pub key: Option<Arc<CachedKey>>,
}

/// An admitted admin key.
#[derive(Debug, Clone)]
pub struct AdmittedAdmin {
    pub key: Arc<AdminKey>,
    /// The hash of the presented secret (to look the key up again: [`admin_now`]).
    pub hash: KeyHash,
    /// `X-Tenant-Id`, when sent (not yet checked against the key's binding).
    pub tenant: Option<TenantId>,
}

/// Admits an admin key: alive (not revoked), and a well-formed `X-Tenant-Id` if one was sent.
pub async fn admin(state: &AppState, presented: Presented) -> Result<AdmittedAdmin, Refusal> {
    let secret = presented.secret.expose_secret();
    let (entry, hash) = resolve_hashed(state, secret).await?;
    let (cached, hash) = match (entry, hash) {
        (Entry::Admin(a), Some(h)) => (a, h),
        (Entry::Key(k), _) => {
            let tenant = Some(k.found.key.tenant_id.clone());
            return Err(Refusal::Unauthenticated(failed(
                state,
                Surface::Admin,
                "not_an_admin_key",
                tenant,
                secret,
                None,
            )));
        }
        _ => {
            return Err(Refusal::Unauthenticated(failed(
                state,
                Surface::Admin,
                "unknown_or_malformed",
                None,
                secret,
                None,
            )));
        }
    };
    let now = state.clock.now();
    if cached.key.revoked_at.is_some_and(|r| r <= now) {
        let tenant = cached.key.tenant_id.clone();
        return Err(Refusal::Unauthenticated(failed(
            state,
            Surface::Admin,
            "revoked",
            tenant,
            secret,
            None,
        )));
    }
    let tenant = presented
        .tenant
        .map_err(|InvalidTenantHeader| Refusal::InvalidTenantHeader { key: None })?;
    touch(state, &cached.used, &cached.key.id, now);
    Ok(AdmittedAdmin {
        key: cached.key.clone(),
        hash,
        tenant,
    })
}

/// What a request asks of a tenant key.
#[derive(Debug, Clone, Copy)]
pub struct Needs<'a> {
    /// The tenant the request names (`X-Tenant-Id`, or the verify API's `tenant`).
    pub tenant: Option<&'a TenantId>,
    pub environment: Option<Environment>,
    pub scopes: &'a [Scope],
    /// The client's address (for the key's IP allowlist).
    pub ip: Option<IpAddr>,
}

/// A tenant key's decision: the key the secret names (none for an unknown or malformed
/// secret, or an admin key's), and the decision code.
#[derive(Debug)]
pub struct Evaluation {
    pub key: Option<Arc<CachedKey>>,
    pub code: DecisionCode,
    /// The secret is an admin key's.
    pub admin: bool,
}

/// Resolves `secret` and decides on it against `needs` at `now` (the verify API answers with
/// this; the gateway admits on it, [`tenant_key`]). Tells the anomaly detector.
pub async fn evaluate(
    state: &AppState,
    secret: &str,
    needs: &Needs<'_>,
    now: OffsetDateTime,
) -> Result<Evaluation, StoreError> {
    let (key, admin) = match resolve(state, secret).await? {
        Entry::Key(k) => (Some(k), false),
        Entry::Admin(_) => (None, true),
        Entry::Unknown => (None, false),
    };
    let subject = key.as_deref().map(|k| Subject {
        key: &k.found.key,
        tenant_status: k.found.tenant_status,
        secret_expires_at: k.found.secret_expires_at,
    });
    let requirements = Requirements {
        tenant: needs.tenant,
        environment: needs.environment,
        scopes: needs.scopes,
        ip: needs.ip,
    };
    let code = decision::decide(subject, &requirements, now);
    Ok(Evaluation { key, code, admin })
}

/// Admits a tenant key for a gateway request: alive, of the named tenant and environment,
/// from an allowed address, with the scopes needed. Rate limits are the gateway's next step.
pub async fn tenant_key(
    state: &AppState,
    presented: Presented,
    needs: Needs<'_>,
) -> Result<Arc<CachedKey>, Refusal> {
    let now = state.clock.now();
    let tenant = presented.tenant.as_ref().ok().and_then(Option::as_ref);
    let secret = presented.secret.expose_secret();
    let eval = evaluate(state, secret, &Needs { tenant, ..needs }, now).await?;
    observe(state, now, eval.key.as_deref(), eval.code, needs.ip);
    let Some(key) = eval.key else {
        let reason = if eval.admin {
            "admin_key_on_gateway"
        } else {
            "unknown_or_malformed"
        };
        return Err(Refusal::Unauthenticated(failed(
            state,
            Surface::Gateway,
            reason,
            None,
            secret,
            needs.ip,
        )));
    };
    let dead = match eval.code {
        DecisionCode::Expired => Some("expired"),
        DecisionCode::Revoked => Some("revoked"),
        _ => None,
    };
    if let Some(reason) = dead {
        let tenant = Some(key.found.key.tenant_id.clone());
        let mut f = failed(state, Surface::Gateway, reason, tenant, secret, needs.ip);
        f.key = Some(key);
        return Err(Refusal::Unauthenticated(f));
    }
    if presented.tenant.is_err() {
        return Err(Refusal::InvalidTenantHeader { key: Some(key) });
    }
    if eval.code != DecisionCode::Valid {
        tracing::info!(key_id = %key.found.key.id, code = eval.code.as_str(), "gateway: key refused");
        return Err(Refusal::Forbidden {
            code: eval.code,
            key,
        });
    }
    touch(state, &key.used, &key.found.key.id, now);
    Ok(key)
}

/// Tells the anomaly detector of a decision on `key` (`None`: an unknown credential, which
/// counts towards its client address's failure bursts).
pub fn observe(
    state: &AppState,
    now: OffsetDateTime,
    key: Option<&CachedKey>,
    code: DecisionCode,
    ip: Option<IpAddr>,
) {
    if let Some(d) = &state.anomaly {
        let known = key
            .filter(|_| code != DecisionCode::NotFound)
            .map(|k| (&k.found.key.tenant_id, k.found.key.id.as_str()));
        crate::events::anomaly::observe(d, now, known, ip, code);
    }
}

/// Reports a use of a credential at most once per [`TOUCH_EVERY_SECONDS`] per cached entry.
pub fn touch(state: &AppState, used: &UseMarker, id: &str, now: OffsetDateTime) {
    if used.should_touch(now.unix_timestamp(), TOUCH_EVERY_SECONDS) {
        state.usage.record(id, now);
    }
}

/// An authentication failure: counted by reason, logged with the key's hint, and returned with
/// its audit facts.
fn failed(
    state: &AppState,
    surface: Surface,
    reason: &'static str,
    tenant: Option<TenantId>,
    secret: &str,
    client: Option<IpAddr>,
) -> Failure {
    state
        .metrics
        .auth_failures
        .get_or_create(&crate::metrics::CodeLabel { code: reason })
        .inc();
    let hint = key::hint(secret);
    let shown = hint.as_deref().unwrap_or("(malformed)");
    match surface {
        Surface::Admin => tracing::warn!(reason, key_hint = shown, "admin authentication failed"),
        Surface::Gateway => {
            tracing::warn!(reason, client = ?client, key_hint = shown, "gateway authentication failed");
        }
    }
    Failure {
        reason,
        tenant,
        hint,
        key: None,
    }
}
