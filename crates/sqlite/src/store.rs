//! The [`Store`] implementation. Every key query names its tenant (`WHERE tenant_id = ? AND …`).
use async_trait::async_trait;
use portcullis_core::{
    OffsetDateTime,
    clock::whole_seconds,
    hash::KeyHash,
    model::{AdminKey, ApiKey, Tenant},
    tenant::TenantId,
};
use portcullis_store::{
    ChangeTarget, Edit, KeyFilter, KeyMatch, Page, PageRequest, Result, Rolled, Store, StoreError,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::{
    SqliteStore, db, feed,
    queries::{
        admin_by_id, hashes_in, insert_key, insert_secret, key_in, tenant_exists, tenant_in,
        touch_table,
    },
    rows::{self, json, normalize_key, normalize_tenant, opt_ts, ts},
};

fn key_target(tenant: &TenantId, id: &str) -> ChangeTarget {
    ChangeTarget::Key {
        tenant: tenant.clone(),
        id: id.to_owned(),
    }
}

/// Uses of keys written per statement by `touch_keys`.
const TOUCH_CHUNK: usize = 5_000;

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn create_tenant(&self, t: &Tenant) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenants (id, name, status, key_prefix, max_key_lifetime_seconds, \
             created_at, updated_at, rate_limit, allowed_scopes, max_key_rate_limit) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(t.status.as_str())
        .bind(&t.key_prefix)
        .bind(t.max_key_lifetime_seconds)
        .bind(ts(t.created_at))
        .bind(ts(t.updated_at))
        .bind(rows::rate_limit(t.rate_limit.as_ref())?)
        .bind(t.allowed_scopes.as_ref().map(json).transpose()?)
        .bind(rows::rate_limit(t.max_key_rate_limit.as_ref())?)
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        let mut conn = self.read.acquire().await.map_err(db)?;
        tenant_in(&mut conn, id).await
    }

    async fn list_tenants(&self, req: &PageRequest) -> Result<Page<Tenant>> {
        let limit = req.effective_limit();
        let mut q = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants t WHERE 1 = 1"
        ));
        if let Some(after) = &req.after {
            q.push(" AND t.id > ").push_bind(after.as_str());
        }
        q.push(" ORDER BY t.id LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = q.build().fetch_all(&self.read).await.map_err(db)?;
        let items = rows.iter().map(rows::tenant).collect::<Result<Vec<_>>>()?;
        Ok(Page::cut(items, limit, |t| t.id.as_str().to_owned()))
    }

    async fn update_tenant(&self, id: &TenantId, edit: Edit<'_, Tenant>) -> Result<Tenant> {
        let mut tx = self.begin().await?;
        let current = tenant_in(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        let mut t = current.clone();
        edit(&mut t)?;
        // What identifies a tenant cannot be edited.
        t.id = current.id;
        t.key_prefix = current.key_prefix;
        t.created_at = current.created_at;
        normalize_tenant(&mut t);
        sqlx::query(
            "UPDATE tenants SET name = ?, status = ?, max_key_lifetime_seconds = ?, \
             rate_limit = ?, allowed_scopes = ?, max_key_rate_limit = ?, updated_at = ? \
             WHERE id = ?",
        )
        .bind(&t.name)
        .bind(t.status.as_str())
        .bind(t.max_key_lifetime_seconds)
        .bind(rows::rate_limit(t.rate_limit.as_ref())?)
        .bind(t.allowed_scopes.as_ref().map(json).transpose()?)
        .bind(rows::rate_limit(t.max_key_rate_limit.as_ref())?)
        .bind(ts(t.updated_at))
        .bind(t.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        feed::record(&mut tx, &ChangeTarget::Tenant(t.id.clone())).await?;
        tx.commit().await.map_err(db)?;
        Ok(t)
    }

    async fn create_key(&self, key: &ApiKey, hash: &KeyHash) -> Result<()> {
        let mut tx = self.begin().await?;
        if !tenant_exists(&mut tx, &key.tenant_id).await? {
            return Err(StoreError::NotFound);
        }
        insert_key(&mut tx, key).await?;
        insert_secret(&mut tx, key, hash, None).await?;
        tx.commit().await.map_err(db)
    }

    async fn get_key(&self, tenant: &TenantId, id: &str) -> Result<Option<ApiKey>> {
        let mut conn = self.read.acquire().await.map_err(db)?;
        key_in(&mut conn, tenant, id).await
    }

    async fn list_keys(
        &self,
        tenant: &TenantId,
        filter: &KeyFilter,
        req: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let limit = req.effective_limit();
        let mut q = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys k WHERE k.tenant_id = "
        ));
        q.push_bind(tenant.as_str());
        if let Some(after) = &req.after {
            q.push(" AND k.id > ").push_bind(after.as_str());
        }
        if let Some(env) = filter.environment {
            q.push(" AND k.environment = ").push_bind(env.as_str());
        }
        match filter.revoked {
            Some(true) => {
                q.push(" AND k.revoked_at IS NOT NULL");
            }
            Some(false) => {
                q.push(" AND k.revoked_at IS NULL");
            }
            None => {}
        }
        if let Some(x) = &filter.external_id {
            q.push(" AND k.external_id = ").push_bind(x.as_str());
        }
        q.push(" ORDER BY k.id LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = q.build().fetch_all(&self.read).await.map_err(db)?;
        let items = rows.iter().map(rows::api_key).collect::<Result<Vec<_>>>()?;
        Ok(Page::cut(items, limit, |k| k.id.clone()))
    }

    async fn keys_expiring(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<&(OffsetDateTime, String)>,
        limit: u32,
    ) -> Result<Vec<ApiKey>> {
        let limit = PageRequest { after: None, limit }.effective_limit();
        let mut q = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys k WHERE k.revoked_at IS NULL AND k.expires_at >= "
        ));
        q.push_bind(from.unix_timestamp())
            .push(" AND k.expires_at < ")
            .push_bind(to.unix_timestamp());
        if let Some((at, id)) = after {
            q.push(" AND (k.expires_at > ")
                .push_bind(at.unix_timestamp())
                .push(" OR (k.expires_at = ")
                .push_bind(at.unix_timestamp())
                .push(" AND k.id > ")
                .push_bind(id.as_str())
                .push("))");
        }
        q.push(" ORDER BY k.expires_at, k.id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(db)?;
        rows.iter().map(rows::api_key).collect()
    }

    async fn update_key(
        &self,
        tenant: &TenantId,
        id: &str,
        edit: Edit<'_, ApiKey>,
    ) -> Result<ApiKey> {
        let mut tx = self.begin().await?;
        let current = key_in(&mut tx, tenant, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut k = current.clone();
        edit(&mut k)?;
        // Identity, secret and lifecycle fields change only through roll, revoke and touch.
        k.id = current.id;
        k.tenant_id = current.tenant_id;
        k.environment = current.environment;
        k.hint = current.hint;
        k.created_at = current.created_at;
        k.revoked_at = current.revoked_at;
        k.last_used_at = current.last_used_at;
        normalize_key(&mut k);
        sqlx::query(
            "UPDATE api_keys SET name = ?, scopes = ?, expires_at = ?, ip_allowlist = ?, \
             metadata = ?, external_id = ?, rate_limit = ?, updated_at = ? \
             WHERE tenant_id = ? AND id = ?",
        )
        .bind(&k.name)
        .bind(json(&k.scopes)?)
        .bind(opt_ts(k.expires_at))
        .bind(json(&k.ip_allowlist)?)
        .bind(json(&k.metadata)?)
        .bind(k.external_id.as_deref())
        .bind(rows::rate_limit(k.rate_limit.as_ref())?)
        .bind(ts(k.updated_at))
        .bind(k.tenant_id.as_str())
        .bind(&k.id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        feed::record(&mut tx, &key_target(tenant, id)).await?;
        tx.commit().await.map_err(db)?;
        Ok(k)
    }

    async fn roll_key(
        &self,
        tenant: &TenantId,
        id: &str,
        new_hash: &KeyHash,
        new_hint: &str,
        old_secret_expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Rolled> {
        let mut tx = self.begin().await?;
        let mut key = key_in(&mut tx, tenant, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if key.revoked_at.is_some() {
            return Err(StoreError::Revoked);
        }
        let previous_hashes = hashes_in(&mut tx, tenant, id).await?;
        sqlx::query(
            "UPDATE key_secrets SET expires_at = ?1 WHERE tenant_id = ?2 AND key_id = ?3 \
             AND (expires_at IS NULL OR expires_at > ?1)",
        )
        .bind(ts(old_secret_expires_at))
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_secret(&mut tx, &key, new_hash, None).await?;
        key.hint = new_hint.to_owned();
        key.updated_at = whole_seconds(now);
        sqlx::query("UPDATE api_keys SET hint = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(&key.hint)
            .bind(ts(key.updated_at))
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        feed::record(&mut tx, &key_target(tenant, id)).await?;
        tx.commit().await.map_err(db)?;
        Ok(Rolled {
            key,
            previous_hashes,
        })
    }

    async fn revoke_key(&self, tenant: &TenantId, id: &str, now: OffsetDateTime) -> Result<ApiKey> {
        let mut tx = self.begin().await?;
        let mut key = key_in(&mut tx, tenant, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if key.revoked_at.is_some() {
            return Ok(key);
        }
        let now = whole_seconds(now);
        sqlx::query(
            "UPDATE api_keys SET revoked_at = ?1, updated_at = ?1 WHERE tenant_id = ?2 AND id = ?3",
        )
        .bind(ts(now))
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        feed::record(&mut tx, &key_target(tenant, id)).await?;
        tx.commit().await.map_err(db)?;
        key.revoked_at = Some(now);
        key.updated_at = now;
        Ok(key)
    }

    async fn key_hashes(&self, tenant: &TenantId, id: &str) -> Result<Vec<KeyHash>> {
        let mut conn = self.read.acquire().await.map_err(db)?;
        let hashes = hashes_in(&mut conn, tenant, id).await?;
        // Every key has a current secret: no hash means no such key in this tenant.
        if hashes.is_empty() {
            return Err(StoreError::NotFound);
        }
        Ok(hashes)
    }

    async fn find_key(&self, hash: &KeyHash) -> Result<Option<KeyMatch>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            ", t.status, s.expires_at, t.rate_limit FROM key_secrets s \
             JOIN api_keys k ON k.tenant_id = s.tenant_id AND k.id = s.key_id \
             JOIN tenants t ON t.id = k.tenant_id \
             WHERE s.hash = ?"
        ))
        .bind(&hash.0[..])
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let extra = rows::KEY_COLUMNS;
        Ok(Some(KeyMatch {
            key: rows::api_key(&row)?,
            tenant_status: rows::status(row.try_get(extra).map_err(db)?)?,
            secret_expires_at: rows::opt_ts_at(&row, extra + 1)?,
            tenant_rate_limit: rows::rate_limit_at(&row, extra + 2)?,
        }))
    }

    async fn touch_keys(&self, used: &[(String, OffsetDateTime)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for chunk in used.chunks(TOUCH_CHUNK) {
            let uses: Vec<(&str, i64)> =
                chunk.iter().map(|(id, t)| (id.as_str(), ts(*t))).collect();
            let uses = json(&uses)?;
            touch_table(&mut tx, "api_keys", &uses).await?;
            touch_table(&mut tx, "admin_keys", &uses).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn create_admin_key(&self, key: &AdminKey, hash: &KeyHash) -> Result<()> {
        let mut tx = self.begin().await?;
        let tenant_missing = match &key.tenant_id {
            Some(t) => !tenant_exists(&mut tx, t).await?,
            None => false,
        };
        if tenant_missing {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO admin_keys (id, hash, name, tenant_id, scopes, hint, created_at, \
             revoked_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&hash.0[..])
        .bind(&key.name)
        .bind(key.tenant_id.as_ref().map(TenantId::as_str))
        .bind(json(&key.scopes)?)
        .bind(&key.hint)
        .bind(ts(key.created_at))
        .bind(opt_ts(key.revoked_at))
        .bind(opt_ts(key.last_used_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn find_admin_key(&self, hash: &KeyHash) -> Result<Option<AdminKey>> {
        sqlx::query(concat!(
            "SELECT ",
            admin_columns!(),
            " FROM admin_keys a WHERE a.hash = ?"
        ))
        .bind(&hash.0[..])
        .fetch_optional(&self.read)
        .await
        .map_err(db)?
        .map(|r| rows::admin_key(&r))
        .transpose()
    }

    async fn list_admin_keys(&self) -> Result<Vec<AdminKey>> {
        sqlx::query(concat!(
            "SELECT ",
            admin_columns!(),
            " FROM admin_keys a ORDER BY a.id"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(rows::admin_key)
        .collect()
    }

    async fn revoke_admin_key(&self, id: &str, now: OffsetDateTime) -> Result<AdminKey> {
        let mut tx = self.begin().await?;
        let mut key = admin_by_id(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if key.revoked_at.is_some() {
            return Ok(key);
        }
        let now = whole_seconds(now);
        sqlx::query("UPDATE admin_keys SET revoked_at = ? WHERE id = ?")
            .bind(ts(now))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        feed::record(&mut tx, &ChangeTarget::AdminKey { id: id.to_owned() }).await?;
        tx.commit().await.map_err(db)?;
        key.revoked_at = Some(now);
        Ok(key)
    }

    async fn count_admin_keys(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admin_keys")
            .fetch_one(&self.read)
            .await
            .map_err(db)?;
        u64::try_from(n).map_err(|_| StoreError::Backend("negative count".to_owned()))
    }
}
