//! The queries shared by the [`portcullis_store::Store`] methods, each run on a connection
//! or inside the caller's transaction. Every key query names its tenant.
use portcullis_core::{
    hash::KeyHash,
    model::{AdminKey, ApiKey, Tenant},
    tenant::TenantId,
};
use portcullis_store::Result;
use sqlx::{Row, SqliteConnection};

use crate::{
    db,
    rows::{self, KeyValues},
};

pub(crate) async fn tenant_in(
    conn: &mut SqliteConnection,
    id: &TenantId,
) -> Result<Option<Tenant>> {
    sqlx::query(concat!(
        "SELECT ",
        tenant_columns!(),
        " FROM tenants t WHERE t.id = ?"
    ))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .map(|r| rows::tenant(&r))
    .transpose()
}

pub(crate) async fn tenant_exists(conn: &mut SqliteConnection, id: &TenantId) -> Result<bool> {
    let row = sqlx::query("SELECT 1 FROM tenants WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

pub(crate) async fn key_in(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<ApiKey>> {
    sqlx::query(concat!(
        "SELECT ",
        key_columns!(),
        " FROM api_keys k WHERE k.tenant_id = ? AND k.id = ?"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .map(|r| rows::api_key(&r))
    .transpose()
}

pub(crate) async fn hashes_in(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    id: &str,
) -> Result<Vec<KeyHash>> {
    sqlx::query("SELECT hash FROM key_secrets WHERE tenant_id = ? AND key_id = ? ORDER BY hash")
        .bind(tenant.as_str())
        .bind(id)
        .fetch_all(conn)
        .await
        .map_err(db)?
        .iter()
        .map(|r| rows::hash(r.try_get::<&[u8], _>(0).map_err(db)?))
        .collect()
}

pub(crate) async fn admin_by_id(conn: &mut SqliteConnection, id: &str) -> Result<Option<AdminKey>> {
    sqlx::query(concat!(
        "SELECT ",
        admin_columns!(),
        " FROM admin_keys a WHERE a.id = ?"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .map(|r| rows::admin_key(&r))
    .transpose()
}

/// Inserts a key row (inside the caller's transaction).
pub(crate) async fn insert_key(conn: &mut SqliteConnection, k: &ApiKey) -> Result<()> {
    let v = KeyValues::of(k)?;
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, environment, name, scopes, hint, ip_allowlist, \
         metadata, external_id, created_at, updated_at, expires_at, revoked_at, last_used_at, \
         rate_limit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&k.id)
    .bind(k.tenant_id.as_str())
    .bind(k.environment.as_str())
    .bind(&k.name)
    .bind(v.scopes)
    .bind(&k.hint)
    .bind(v.ip_allowlist)
    .bind(v.metadata)
    .bind(k.external_id.as_deref())
    .bind(v.created_at)
    .bind(v.updated_at)
    .bind(v.expires_at)
    .bind(v.revoked_at)
    .bind(v.last_used_at)
    .bind(v.rate_limit)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Inserts a secret's hash of a key (inside the caller's transaction).
pub(crate) async fn insert_secret(
    conn: &mut SqliteConnection,
    k: &ApiKey,
    hash: &KeyHash,
    expires_at: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO key_secrets (hash, key_id, tenant_id, expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(&hash.0[..])
    .bind(&k.id)
    .bind(k.tenant_id.as_str())
    .bind(expires_at)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Records uses of one table's rows, `[[id, unix seconds], …]` in JSON; never backwards.
pub(crate) async fn touch_table(
    conn: &mut SqliteConnection,
    table: &str,
    uses: &str,
) -> Result<()> {
    let sql = format!(
        "UPDATE {table} SET last_used_at = u.t \
         FROM (SELECT json_extract(value, '$[0]') AS id, MAX(json_extract(value, '$[1]')) AS t \
               FROM json_each(?) GROUP BY 1) AS u \
         WHERE {table}.id = u.id AND ({table}.last_used_at IS NULL OR {table}.last_used_at < u.t)"
    );
    sqlx::query(&sql)
        .bind(uses)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}
