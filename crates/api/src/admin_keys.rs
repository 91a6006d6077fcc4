//! `/v1/admin-keys`: list, create (secret shown once) and revoke admin keys, for a root (global)
//! admin key only, through the same operations as the `portcullis admin-key` commands.
//!
//! - Listing needs `keys:read`, creating and revoking `keys:write`; a tenant-bound admin key is
//!   refused (403 `root_admin_required`).
//! - No key grants what it does not hold: a new key's scopes, and the scopes of a key to revoke,
//!   must all be covered by the caller's (403 `scope_not_held`).
//! - The creation answer carries the secret, the only time it is shown, with
//!   `Cache-Control: no-store`.
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use portcullis_core::{
    ExposeSecret, ids,
    model::AdminKey,
    request::CreateAdminKey,
    scope::{self, Scope},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::Admin, body::JsonBody, error::ApiError, extract::Path, no_store::SecretJson, ops,
    page::PageBody, state::AppState,
};

/// `POST /v1/admin-keys` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub name: String,
    /// Binds the key to one tenant (absent: a root key).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Admin scopes (absent or empty: every admin scope).
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn scope_not_held() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "scope_not_held",
        "an admin key can only grant or revoke scopes it holds itself",
    )
}

/// Does `admin` hold every one of `scopes`?
fn holds(admin: &Admin, scopes: &[Scope]) -> bool {
    scopes
        .iter()
        .all(|s| admin.key.scopes.iter().any(|own| own.covers(s)))
}

fn root(admin: &Admin, scope: &'static str) -> Result<(), ApiError> {
    admin.require(scope)?;
    admin.require_root()
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Json<PageBody<AdminKey>>, ApiError> {
    root(&admin, "keys:read")?;
    let keys = state.store.list_admin_keys().await?;
    Ok(Json(PageBody {
        data: keys,
        next_cursor: None,
    }))
}

pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    root(&admin, "keys:write")?;
    let granted = if body.scopes.is_empty() {
        scope::parse_admin_scopes(scope::ADMIN_SCOPES)?
    } else {
        scope::parse_admin_scopes(&body.scopes)?
    };
    if !holds(&admin, &granted) {
        return Err(scope_not_held());
    }
    let input = CreateAdminKey {
        name: body.name,
        tenant_id: body.tenant_id,
        scopes: body.scopes,
    };
    let new = ops::create_admin_key(state.ctx(&admin.key.id), input).await?;
    tracing::info!(admin_key_id = %new.key.id, admin_key = %admin.key.id, "admin key created");
    let answer = json!({"admin_key": new.key, "secret": new.secret.expose_secret()});
    Ok(SecretJson(StatusCode::CREATED, answer).into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<AdminKey>, ApiError> {
    root(&admin, "keys:write")?;
    if !ids::is_id("adm", &id) {
        return Err(ApiError::not_found());
    }
    let target = state
        .store
        .list_admin_keys()
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(ApiError::not_found)?;
    if !holds(&admin, &target.scopes) {
        return Err(scope_not_held());
    }
    let ctx = state.ctx(&admin.key.id);
    let key = ops::revoke_admin_key(ctx, &id).await?;
    tracing::info!(admin_key_id = %key.id, admin_key = %admin.key.id, "admin key revoked");
    Ok(Json(key))
}
