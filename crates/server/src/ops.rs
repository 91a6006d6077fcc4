//! The changes portcullis makes, shared by the HTTP API and the operator CLI so both validate
//! and write exactly alike. Each is one store transaction.
use axum::http::StatusCode;
use portcullis_core::{
    ExposeSecret, OffsetDateTime,
    hash::Pepper,
    model::{ApiKey, Tenant},
    request::{
        self, CreateAdminKey, CreateKey, CreateTenant, KeyPolicy, NewAdminKey, NewKey, RollKey,
        UpdateKey, UpdateTenant,
    },
    tenant::{TenantId, TenantStatus},
};
use portcullis_store::{Store, StoreError};

use crate::{cache::KeyCache, error::ApiError};

/// Everything a change needs.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub store: &'a dyn Store,
    pub pepper: &'a Pepper,
    pub policy: &'a KeyPolicy,
    pub now: OffsetDateTime,
    /// The cache to invalidate (the CLI has none).
    pub cache: Option<&'a KeyCache>,
}

/// A roll's result: the key, its new secret and when the previous secret stops working.
#[derive(Debug)]
pub struct RolledKey {
    pub key: ApiKey,
    pub secret: portcullis_core::SecretString,
    pub previous_secret_expires_at: OffsetDateTime,
}

/// Creates an admin key (operator CLI and first start; there is no HTTP endpoint for it).
/// Validation failures come back as [`StoreError::Invalid`]; a missing tenant as `NotFound`.
pub async fn create_admin_key(
    store: &dyn Store,
    pepper: &Pepper,
    now: OffsetDateTime,
    input: CreateAdminKey,
) -> Result<NewAdminKey, StoreError> {
    let new = input.create(now)?;
    store
        .create_admin_key(&new.key, &pepper.hash(new.secret.expose_secret()))
        .await?;
    Ok(new)
}

pub async fn create_tenant(ctx: Ctx<'_>, input: CreateTenant) -> Result<Tenant, ApiError> {
    let tenant = input.validate(ctx.now)?;
    ctx.store.create_tenant(&tenant).await?;
    Ok(tenant)
}

pub async fn update_tenant(
    ctx: Ctx<'_>,
    id: &TenantId,
    input: UpdateTenant,
) -> Result<Tenant, ApiError> {
    // Cached keys carry their tenant's status and rate limit: a change of either drops them.
    let cached_fields_change = input.status.is_some() || input.rate_limit.is_some();
    let now = ctx.now;
    let updated = ctx
        .store
        .update_tenant(id, Box::new(move |t| input.apply(t, now)))
        .await?;
    if let (true, Some(cache)) = (cached_fields_change, ctx.cache) {
        cache.invalidate_tenant(id);
    }
    Ok(updated)
}

pub async fn load_tenant(store: &dyn Store, id: &TenantId) -> Result<Tenant, ApiError> {
    store.get_tenant(id).await?.ok_or_else(ApiError::not_found)
}

pub async fn create_key(
    ctx: Ctx<'_>,
    tenant: &TenantId,
    input: CreateKey,
) -> Result<NewKey, ApiError> {
    let tenant = load_tenant(ctx.store, tenant).await?;
    if tenant.status != TenantStatus::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tenant_suspended",
            "the tenant is suspended",
        ));
    }
    let new = input.create(&tenant, ctx.policy, ctx.now)?;
    ctx.store
        .create_key(&new.key, &ctx.pepper.hash(new.secret.expose_secret()))
        .await?;
    Ok(new)
}

async fn invalidate(ctx: Ctx<'_>, tenant: &TenantId, id: &str) -> Result<(), ApiError> {
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
) -> Result<ApiKey, ApiError> {
    let t = load_tenant(ctx.store, tenant).await?;
    let (policy, now) = (*ctx.policy, ctx.now);
    let key = ctx
        .store
        .update_key(
            tenant,
            id,
            Box::new(move |k| input.apply(k, &t, &policy, now)),
        )
        .await?;
    invalidate(ctx, tenant, id).await?;
    Ok(key)
}

pub async fn roll_key(
    ctx: Ctx<'_>,
    tenant: &TenantId,
    id: &str,
    input: RollKey,
) -> Result<RolledKey, ApiError> {
    let previous_secret_expires_at = input.old_secret_expiry(ctx.now)?;
    let t = load_tenant(ctx.store, tenant).await?;
    let current = ctx
        .store
        .get_key(tenant, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
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
    Ok(RolledKey {
        key: rolled.key,
        secret,
        previous_secret_expires_at,
    })
}

pub async fn revoke_key(ctx: Ctx<'_>, tenant: &TenantId, id: &str) -> Result<ApiKey, ApiError> {
    let key = ctx.store.revoke_key(tenant, id, ctx.now).await?;
    invalidate(ctx, tenant, id).await?;
    Ok(key)
}
