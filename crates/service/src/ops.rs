//! The changes portcullis makes, shared by the HTTP API and the operator CLI so both validate
//! and write exactly alike. Each is one store transaction, and each successful one is an audit
//! record (kind `change`) with its actor, its target and the object before and after (key
//! records carry only the non-secret hint: never a secret, never a hash).
use portcullis_core::{
    ExposeSecret, OffsetDateTime, ceiling,
    hash::Pepper,
    model::{AdminKey, ApiKey, Tenant},
    request::{
        self, CreateAdminKey, CreateKey, CreateTenant, KeyPolicy, NewAdminKey, NewKey, RollKey,
        UpdateKey, UpdateTenant,
    },
    tenant::{TenantId, TenantStatus},
};
use portcullis_store::{Store, StoreError};
use serde::Serialize;
use serde_json::Value;

use crate::{
    audit::{AuditLog, Kind, Record},
    cache::KeyCache,
    events::Events,
};
use portcullis_events::EventType;

/// Why an operation failed. The API maps each to its answer in one place; the CLI prints it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// No such object (or it belongs to another tenant).
    #[error("not found")]
    NotFound,
    /// Keys cannot be created for a suspended tenant.
    #[error("the tenant is suspended")]
    TenantSuspended,
    /// The input breaks a rule (its stable code: [`ValidationError::code`]).
    #[error(transparent)]
    Invalid(#[from] portcullis_core::error::ValidationError),
    /// The store refused or failed (a conflict, a revoked key, or an internal failure).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OpError {
    /// The stable code of this failure (the one the API answers with; listed in
    /// `docs/errors.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound | Self::Store(StoreError::NotFound) => "not_found",
            Self::TenantSuspended => "tenant_suspended",
            Self::Invalid(v) | Self::Store(StoreError::Invalid(v)) => v.code(),
            Self::Store(StoreError::Conflict) => "tenant_exists",
            Self::Store(StoreError::Revoked) => "key_revoked",
            Self::Store(_) => "internal_error",
        }
    }
}

/// Everything a change needs.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Who makes the change: an admin key id (HTTP API), `operator` (the CLI) or `bootstrap`.
    pub actor: &'a str,
    /// Where the change is recorded.
    pub audit: &'a AuditLog,
    pub store: &'a dyn Store,
    pub pepper: &'a Pepper,
    pub policy: &'a KeyPolicy,
    pub now: OffsetDateTime,
    /// The cache to invalidate (the CLI has none).
    pub cache: Option<&'a KeyCache>,
    /// Where key events are published (none: not published).
    pub events: Option<&'a Events>,
}

/// Publishes a key event about `key` (its non-secret facts, and who acted) and waits until it
/// is stored.
async fn key_event(ctx: Ctx<'_>, kind: EventType, key: &ApiKey, extra: Option<(&str, Value)>) {
    let Some(events) = ctx.events else { return };
    let mut data = crate::events::key_data(key);
    if let Value::Object(m) = &mut data {
        m.insert("actor".into(), Value::from(ctx.actor));
    }
    if let (Some((k, v)), Value::Object(m)) = (extra, &mut data) {
        m.insert(k.to_owned(), v);
    }
    events
        .emit(kind, Some(key.tenant_id.clone()), ctx.now, data)
        .await;
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Records a change made by `ctx.actor`.
fn changed(
    ctx: Ctx<'_>,
    action: &str,
    tenant: Option<&TenantId>,
    key_id: Option<&str>,
    target: Value,
    before: Option<Value>,
    after: Value,
) {
    let mut r = Record::new(ctx.now, Kind::Change, action);
    r.tenant = tenant.map(|t| t.as_str().to_owned());
    r.actor = Some(ctx.actor.to_owned());
    r.key_id = key_id.map(str::to_owned);
    r.request_id = crate::request_id::current();
    r.decision = Some(portcullis_audit::Decision::Allow);
    r.data.insert("target".into(), target);
    if let Some(b) = before {
        r.data.insert("before".into(), b);
    }
    r.data.insert("after".into(), after);
    ctx.audit.record(r);
}

/// A roll's result: the key, its new secret and when the previous secret stops working.
#[derive(Debug)]
pub struct RolledKey {
    pub key: ApiKey,
    pub secret: portcullis_core::SecretString,
    pub previous_secret_expires_at: OffsetDateTime,
}

/// Creates an admin key (operator CLI, first start, and `POST /v1/admin-keys`).
/// Validation failures come back as [`StoreError::Invalid`]; a missing tenant as `NotFound`.
pub async fn create_admin_key(
    ctx: Ctx<'_>,
    input: CreateAdminKey,
) -> Result<NewAdminKey, StoreError> {
    let new = input.create(ctx.now)?;
    ctx.store
        .create_admin_key(&new.key, &ctx.pepper.hash(new.secret.expose_secret()))
        .await?;
    changed(
        ctx,
        "admin_key.create",
        new.key.tenant_id.as_ref(),
        None,
        serde_json::json!({"admin_key_id": new.key.id}),
        None,
        json(&new.key),
    );
    Ok(new)
}

/// Revokes an admin key (operator CLI and `POST /v1/admin-keys/{id}/revoke`).
pub async fn revoke_admin_key(ctx: Ctx<'_>, id: &str) -> Result<AdminKey, StoreError> {
    let key = ctx.store.revoke_admin_key(id, ctx.now).await?;
    if let Some(cache) = ctx.cache {
        cache.invalidate_admin(&key.id);
    }
    changed(
        ctx,
        "admin_key.revoke",
        key.tenant_id.as_ref(),
        None,
        serde_json::json!({"admin_key_id": key.id}),
        None,
        json(&key),
    );
    Ok(key)
}

pub async fn create_tenant(ctx: Ctx<'_>, input: CreateTenant) -> Result<Tenant, OpError> {
    let tenant = input.validate(ctx.now)?;
    ctx.store.create_tenant(&tenant).await?;
    changed(
        ctx,
        "tenant.create",
        Some(&tenant.id),
        None,
        serde_json::json!({"tenant": tenant.id}),
        None,
        json(&tenant),
    );
    Ok(tenant)
}

pub async fn update_tenant(
    ctx: Ctx<'_>,
    id: &TenantId,
    input: UpdateTenant,
) -> Result<Tenant, OpError> {
    // Cached keys carry their tenant's status and rate limit: a change of either drops them.
    let cached_fields_change = input.status.is_some() || input.rate_limit.is_some();
    let now = ctx.now;
    let mut before = None;
    let seen = &mut before;
    let updated = ctx
        .store
        .update_tenant(
            id,
            Box::new(move |t| {
                *seen = Some(json(&*t));
                input.apply(t, now)
            }),
        )
        .await?;
    if let (true, Some(cache)) = (cached_fields_change, ctx.cache) {
        cache.invalidate_tenant(id);
    }
    changed(
        ctx,
        "tenant.update",
        Some(id),
        None,
        serde_json::json!({"tenant": id}),
        before,
        json(&updated),
    );
    Ok(updated)
}

pub async fn load_tenant(store: &dyn Store, id: &TenantId) -> Result<Tenant, OpError> {
    store.get_tenant(id).await?.ok_or(OpError::NotFound)
}

pub async fn create_key(
    ctx: Ctx<'_>,
    tenant: &TenantId,
    input: CreateKey,
) -> Result<NewKey, OpError> {
    let tenant = load_tenant(ctx.store, tenant).await?;
    if tenant.status != TenantStatus::Active {
        return Err(OpError::TenantSuspended);
    }
    let new = input.create(&tenant, ctx.policy, ctx.now)?;
    ctx.store
        .create_key(&new.key, &ctx.pepper.hash(new.secret.expose_secret()))
        .await?;
    changed(
        ctx,
        "key.create",
        Some(&tenant.id),
        Some(&new.key.id),
        serde_json::json!({"tenant": tenant.id, "key_id": new.key.id}),
        None,
        json(&new.key),
    );
    key_event(ctx, EventType::KeyCreated, &new.key, None).await;
    Ok(new)
}

async fn invalidate(ctx: Ctx<'_>, tenant: &TenantId, id: &str) -> Result<(), OpError> {
    if let Some(cache) = ctx.cache {
        cache.invalidate(&ctx.store.key_hashes(tenant, id).await?);
    }
    Ok(())
}

pub async fn update_key(
    ctx: Ctx<'_>,
    tenant: &TenantId,
    id: &str,
    input: UpdateKey,
) -> Result<ApiKey, OpError> {
    let t = load_tenant(ctx.store, tenant).await?;
    let (policy, now) = (*ctx.policy, ctx.now);
    let mut before = None;
    let seen = &mut before;
    let key = ctx
        .store
        .update_key(
            tenant,
            id,
            Box::new(move |k| {
                *seen = Some(json(&*k));
                input.apply(k, &t, &policy, now)
            }),
        )
        .await?;
    changed(
        ctx,
        "key.update",
        Some(tenant),
        Some(id),
        serde_json::json!({"tenant": tenant, "key_id": id}),
        before,
        json(&key),
    );
    invalidate(ctx, tenant, id).await?;
    key_event(ctx, EventType::KeyUpdated, &key, None).await;
    Ok(key)
}

pub async fn roll_key(
    ctx: Ctx<'_>,
    tenant: &TenantId,
    id: &str,
    input: RollKey,
) -> Result<RolledKey, OpError> {
    let previous_secret_expires_at = input.old_secret_expiry(ctx.now)?;
    let t = load_tenant(ctx.store, tenant).await?;
    let current = ctx
        .store
        .get_key(tenant, id)
        .await?
        .ok_or(OpError::NotFound)?;
    // A new secret is only given to a key within its tenant's ceilings (lowered ceilings are
    // met by an update first).
    if current.revoked_at.is_none() {
        ceiling::check_key(&t, &current)?;
    }
    let (secret, hint) = request::roll_secret(&t, &current);
    let hash = ctx.pepper.hash(secret.expose_secret());
    let rolled = ctx
        .store
        .roll_key(
            tenant,
            id,
            &hash,
            &hint,
            previous_secret_expires_at,
            ctx.now,
        )
        .await?;
    if let Some(cache) = ctx.cache {
        cache.invalidate(&rolled.previous_hashes);
    }
    let mut after = json(&rolled.key);
    if let Value::Object(m) = &mut after {
        m.insert(
            "previous_secret_expires_at".into(),
            previous_secret_expires_at
                .format(&time::format_description::well_known::Rfc3339)
                .map_or(Value::Null, Value::String),
        );
    }
    changed(
        ctx,
        "key.roll",
        Some(tenant),
        Some(id),
        serde_json::json!({"tenant": tenant, "key_id": id}),
        Some(json(&current)),
        after,
    );
    let overlap = previous_secret_expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .map_or(Value::Null, Value::String);
    key_event(
        ctx,
        EventType::KeyRolled,
        &rolled.key,
        Some(("previous_secret_expires_at", overlap)),
    )
    .await;
    Ok(RolledKey {
        key: rolled.key,
        secret,
        previous_secret_expires_at,
    })
}

pub async fn revoke_key(ctx: Ctx<'_>, tenant: &TenantId, id: &str) -> Result<ApiKey, OpError> {
    let before = ctx.store.get_key(tenant, id).await?;
    let key = ctx.store.revoke_key(tenant, id, ctx.now).await?;
    changed(
        ctx,
        "key.revoke",
        Some(tenant),
        Some(id),
        serde_json::json!({"tenant": tenant, "key_id": id}),
        before.as_ref().map(json),
        json(&key),
    );
    invalidate(ctx, tenant, id).await?;
    // Revoking is idempotent; the event is raised by the first revocation only.
    if before.is_some_and(|b| b.revoked_at.is_none()) {
        key_event(ctx, EventType::KeyRevoked, &key, None).await;
    }
    Ok(key)
}
