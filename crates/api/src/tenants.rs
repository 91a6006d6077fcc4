//! `/v1/tenants`: create, list, read and update tenants.
use axum::{Json, extract::State, http::StatusCode};
use portcullis_core::{
    model::Tenant,
    request::{CreateTenant, UpdateTenant},
};
use portcullis_store::Page;
use serde::Deserialize;

use crate::{
    auth::Admin,
    body::JsonBody,
    error::ApiError,
    extract::{Path, Query},
    ops,
    page::{self, PageBody},
    state::AppState,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    admin.require("tenants:write")?;
    admin.require_root()?;
    let tenant = ops::create_tenant(state.ctx(&admin.key.id), body).await?;
    tracing::info!(tenant = %tenant.id, admin_key = %admin.key.id, "tenant created");
    Ok((StatusCode::CREATED, Json(tenant)))
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Query(q): Query<ListQuery>,
) -> Result<Json<PageBody<Tenant>>, ApiError> {
    admin.require("tenants:read")?;
    let req = page::request("tenant", q.cursor, q.limit)?;
    let page = match admin
        .key
        .tenant_id
        .as_ref()
        .or(admin.tenant_header.as_ref())
    {
        None => state.store.list_tenants(&req).await?,
        // A tenant-bound key (or a request with X-Tenant-Id) sees one tenant only.
        Some(t) => {
            let own = state.store.get_tenant(t).await?;
            let items = own
                .into_iter()
                .filter(|x| {
                    req.after
                        .as_ref()
                        .is_none_or(|a| x.id.as_str() > a.as_str())
                })
                .collect();
            Page {
                items,
                next_cursor: None,
            }
        }
    };
    Ok(Json(page.into()))
}

pub async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path(tenant): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    admin.require("tenants:read")?;
    let id = admin.tenant(&tenant)?;
    state
        .store
        .get_tenant(&id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> Result<Json<Tenant>, ApiError> {
    admin.require("tenants:write")?;
    let id = admin.tenant(&tenant)?;
    if body.needs_root() {
        // Policy is the vendor's: a tenant-bound key can neither lift its tenant's suspension,
        // nor loosen its key lifetime limit, nor change its tenant's rate limit or ceilings.
        admin.require_root()?;
    }
    let updated = ops::update_tenant(state.ctx(&admin.key.id), &id, body).await?;
    tracing::info!(tenant = %id, admin_key = %admin.key.id, "tenant updated");
    Ok(Json(updated))
}
