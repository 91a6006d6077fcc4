//! `/v1/tenants/{tenant}/keys`: create (secret shown once), list, read, update, roll, revoke.
use axum::{Json, extract::State, http::StatusCode};
use portcullis_core::{
    ExposeSecret, OffsetDateTime, ids,
    model::ApiKey,
    request::{CreateKey, RollKey, UpdateKey},
    tenant::Environment,
};
use portcullis_store::KeyFilter;
use serde::{Deserialize, Serialize};

use crate::{
    auth::Admin,
    body::{JsonBody, OptionalJson},
    error::ApiError,
    extract::{Path, Query},
    no_store::SecretJson,
    ops,
    page::{self, PageBody},
    state::AppState,
};

/// The answer to a create or roll: the only time the secret is ever shown.
#[derive(Debug, Serialize)]
pub struct WithSecret {
    pub key: ApiKey,
    pub secret: String,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
    pub environment: Option<Environment>,
    pub revoked: Option<bool>,
    pub external_id: Option<String>,
}

fn key_id(id: &str) -> Result<&str, ApiError> {
    if ids::is_id("key", id) {
        Ok(id)
    } else {
        Err(ApiError::not_found())
    }
}

pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<SecretJson<WithSecret>, ApiError> {
    admin.require("keys:write")?;
    let tenant = admin.tenant(&tenant)?;
    let new = ops::create_key(state.ctx(&admin.key.id), &tenant, body).await?;
    tracing::info!(tenant = %tenant, key_id = %new.key.id, admin_key = %admin.key.id, "key created");
    let secret = new.secret.expose_secret().to_owned();
    Ok(SecretJson(
        StatusCode::CREATED,
        WithSecret {
            key: new.key,
            secret,
            previous_secret_expires_at: None,
        },
    ))
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Path(tenant): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<PageBody<ApiKey>>, ApiError> {
    admin.require("keys:read")?;
    let tenant = admin.tenant(&tenant)?;
    let req = page::request("key", q.cursor, q.limit)?;
    if q.external_id
        .as_ref()
        .is_some_and(|e| e.is_empty() || e.len() > portcullis_core::limits::MAX_EXTERNAL_ID_LEN)
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "external_id is empty or too long",
        ));
    }
    ops::load_tenant(state.store.as_ref(), &tenant).await?;
    let filter = KeyFilter {
        environment: q.environment,
        revoked: q.revoked,
        external_id: q.external_id,
    };
    Ok(Json(
        state.store.list_keys(&tenant, &filter, &req).await?.into(),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<ApiKey>, ApiError> {
    admin.require("keys:read")?;
    let tenant = admin.tenant(&tenant)?;
    state
        .store
        .get_key(&tenant, key_id(&id)?)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateKey>,
) -> Result<Json<ApiKey>, ApiError> {
    admin.require("keys:write")?;
    let tenant = admin.tenant(&tenant)?;
    let key = ops::update_key(state.ctx(&admin.key.id), &tenant, key_id(&id)?, body).await?;
    tracing::info!(tenant = %tenant, key_id = %key.id, admin_key = %admin.key.id, "key updated");
    Ok(Json(key))
}

pub async fn roll(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RollKey>,
) -> Result<SecretJson<WithSecret>, ApiError> {
    admin.require("keys:write")?;
    let tenant = admin.tenant(&tenant)?;
    let rolled = ops::roll_key(state.ctx(&admin.key.id), &tenant, key_id(&id)?, body).await?;
    tracing::info!(tenant = %tenant, key_id = %rolled.key.id, admin_key = %admin.key.id, "key rolled");
    let secret = rolled.secret.expose_secret().to_owned();
    Ok(SecretJson(
        StatusCode::OK,
        WithSecret {
            key: rolled.key,
            secret,
            previous_secret_expires_at: Some(rolled.previous_secret_expires_at),
        },
    ))
}

pub async fn revoke(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<ApiKey>, ApiError> {
    admin.require("keys:write")?;
    let tenant = admin.tenant(&tenant)?;
    let key = ops::revoke_key(state.ctx(&admin.key.id), &tenant, key_id(&id)?).await?;
    tracing::info!(tenant = %tenant, key_id = %key.id, admin_key = %admin.key.id, "key revoked");
    Ok(Json(key))
}
