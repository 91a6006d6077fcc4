//! The change feed: rows of the `changes` table, appended inside each change's transaction and
//! pruned to the newest [`FEED_RETAINED`] on the way.
use async_trait::async_trait;
use portcullis_core::tenant::TenantId;
use portcullis_store::{
    Change, ChangeFeed, ChangeTarget, PageRequest, Result, StoreError, feed::FEED_RETAINED,
};
use sqlx::{Row, SqliteConnection};

use crate::{SqliteStore, db};

/// Appends an entry for `target` (inside the caller's transaction) and prunes the oldest.
pub(crate) async fn record(conn: &mut SqliteConnection, target: &ChangeTarget) -> Result<()> {
    let (kind, tenant, object) = match target {
        ChangeTarget::Key { tenant, id } => ("key", Some(tenant.as_str()), id.as_str()),
        ChangeTarget::Tenant(t) => ("tenant", Some(t.as_str()), t.as_str()),
        ChangeTarget::AdminKey { id } => ("admin_key", None, id.as_str()),
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO changes (kind, tenant_id, object_id) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(kind)
    .bind(tenant)
    .bind(object)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let keep = i64::try_from(FEED_RETAINED).unwrap_or(i64::MAX);
    // Only every 100th change prunes, so the delete costs nothing on most changes.
    if id % 100 == 0 {
        sqlx::query("DELETE FROM changes WHERE id <= ?")
            .bind(id - keep)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}

fn target(kind: &str, tenant: Option<String>, object: String) -> Result<ChangeTarget> {
    let tenant_id = |t: Option<String>| {
        t.as_deref()
            .and_then(|t| TenantId::parse(t).ok())
            .ok_or_else(|| StoreError::Backend(format!("change of kind {kind} without tenant")))
    };
    Ok(match kind {
        "key" => ChangeTarget::Key {
            tenant: tenant_id(tenant)?,
            id: object,
        },
        "tenant" => ChangeTarget::Tenant(tenant_id(tenant)?),
        "admin_key" => ChangeTarget::AdminKey { id: object },
        other => return Err(StoreError::Backend(format!("unknown change kind {other}"))),
    })
}

#[async_trait]
impl ChangeFeed for SqliteStore {
    async fn latest_change(&self) -> Result<u64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM changes")
            .fetch_one(&self.read)
            .await
            .map_err(db)?;
        Ok(id.map_or(0, |i| u64::try_from(i).unwrap_or(0)))
    }

    async fn changes_after(&self, after: u64, limit: u32) -> Result<Vec<Change>> {
        let limit = PageRequest { after: None, limit }.effective_limit();
        let rows = sqlx::query(
            "SELECT id, kind, tenant_id, object_id FROM changes WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(0).map_err(db)?;
                let kind: String = r.try_get(1).map_err(db)?;
                Ok(Change {
                    id: u64::try_from(id).unwrap_or(0),
                    target: target(&kind, r.try_get(2).map_err(db)?, r.try_get(3).map_err(db)?)?,
                })
            })
            .collect()
    }
}
