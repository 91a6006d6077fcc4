//! The embedded [`WebhookStore`]: tables in the events database (`events.sqlite3`, migration
//! `migrations_events/0002_webhooks.sql`), on the event store's pools when the events are kept
//! there too ([`crate::SqliteEventStore::webhooks`]), or on a file of its own otherwise
//! ([`SqliteWebhookStore::open`], e.g. beside NATS JetStream).
//!
//! Every change is one `BEGIN IMMEDIATE` transaction on the single write connection; every
//! query of a tenant's objects has `tenant = ?`.
use std::{collections::BTreeSet, path::Path};

use async_trait::async_trait;
use portcullis_core::{ExposeSecret, SecretString, ids, tenant::TenantId};
use portcullis_events::{
    Event,
    webhook::{
        Attempt, AttemptResult, DELIVERY_ID_KIND, Delivery, DeliveryStatus, Endpoint,
        EndpointChange, Next, SecretRewrite, WebhookError, WebhookStore,
    },
};
use sqlx::{
    QueryBuilder, Sqlite, SqlitePool, Transaction,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use time::OffsetDateTime;

mod rows;

use rows::{
    DELIVERY_COLUMNS, ENDPOINT_COLUMNS, backend, corrupt, delivery, endpoint, endpoint_in, from_ts,
    get, ts, types_json,
};

/// The embedded webhook store. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct SqliteWebhookStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteWebhookStore {
    pub(crate) fn from_pools(write: SqlitePool, read: SqlitePool) -> Self {
        Self { write, read }
    }

    /// Opens (creating it, mode 0600, when missing) the events database at `path` for its
    /// webhook tables alone: the store of a deployment whose events are kept elsewhere.
    pub async fn open(path: &Path) -> Result<Self, WebhookError> {
        crate::create_private_file(path).map_err(|e| WebhookError::Backend(e.to_string()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let (write, read) = crate::open_pools(options, &crate::events::EVENTS_MIGRATOR)
            .await
            .map_err(|e| WebhookError::Backend(format!("webhooks database: {e}")))?;
        Ok(Self { write, read })
    }

    /// Closes every connection of a store made by [`open`](Self::open).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, WebhookError> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl WebhookStore for SqliteWebhookStore {
    async fn create_endpoint(
        &self,
        e: &Endpoint,
        secret: &SecretString,
        max_per_tenant: u32,
    ) -> Result<(), WebhookError> {
        let mut tx = self.begin().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoints WHERE tenant = ?")
            .bind(e.tenant.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if n >= i64::from(max_per_tenant) {
            return Err(WebhookError::TooManyEndpoints);
        }
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, tenant, url, description, types, secret, \
             enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(e.tenant.as_str())
        .bind(&e.url)
        .bind(&e.description)
        .bind(types_json(e.types))
        .bind(secret.expose_secret())
        .bind(i64::from(e.enabled))
        .bind(ts(e.created_at))
        .bind(ts(e.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, WebhookError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant = ? AND id > ? \
             ORDER BY id LIMIT ?"
        ))
        .bind(tenant.as_str())
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter().map(endpoint).collect()
    }

    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<Endpoint>, WebhookError> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant = ? AND id = ?"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.as_ref().map(endpoint).transpose()
    }

    async fn update_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
        change: &EndpointChange,
        now: OffsetDateTime,
    ) -> Result<(Endpoint, Endpoint), WebhookError> {
        let mut tx = self.begin().await?;
        let before = endpoint_in(&mut tx, tenant, id).await?;
        let mut after = before.clone();
        change.apply(&mut after, now);
        sqlx::query(
            "UPDATE webhook_endpoints SET url = ?, description = ?, types = ?, enabled = ?, \
             updated_at = ? WHERE tenant = ? AND id = ?",
        )
        .bind(&after.url)
        .bind(&after.description)
        .bind(types_json(after.types))
        .bind(i64::from(after.enabled))
        .bind(ts(after.updated_at))
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok((before, after))
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &str) -> Result<Endpoint, WebhookError> {
        let mut tx = self.begin().await?;
        let gone = endpoint_in(&mut tx, tenant, id).await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE tenant = ? AND endpoint_id = ?")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM webhook_endpoints WHERE tenant = ? AND id = ?")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(gone)
    }

    async fn roll_secret(
        &self,
        tenant: &TenantId,
        id: &str,
        secret: &SecretString,
        previous_expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Endpoint, WebhookError> {
        let row = sqlx::query(&format!(
            "UPDATE webhook_endpoints SET previous_secret = secret, \
             previous_secret_expires_at = ?, secret = ?, updated_at = ? \
             WHERE tenant = ? AND id = ? RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(ts(previous_expires_at))
        .bind(secret.expose_secret())
        .bind(ts(now))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&self.write)
        .await
        .map_err(backend)?;
        row.as_ref()
            .map(endpoint)
            .transpose()?
            .ok_or(WebhookError::NotFound)
    }

    async fn cursor(&self) -> Result<u64, WebhookError> {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT last_event_id FROM webhook_cursor WHERE id = 1")
                .fetch_optional(&self.write)
                .await
                .map_err(backend)?;
        Ok(id.and_then(|i| u64::try_from(i).ok()).unwrap_or(0))
    }

    async fn fan_out(
        &self,
        events: &[Event],
        through: u64,
        now: OffsetDateTime,
    ) -> Result<u64, WebhookError> {
        let tenants: BTreeSet<&str> = events
            .iter()
            .filter_map(|e| e.tenant.as_ref().map(TenantId::as_str))
            .collect();
        let mut tx = self.begin().await?;
        let mut endpoints = Vec::new();
        if !tenants.is_empty() {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE enabled = 1 AND tenant IN ("
            ));
            let mut sep = q.separated(", ");
            for t in &tenants {
                sep.push_bind(*t);
            }
            q.push(")");
            let rows = q.build().fetch_all(&mut *tx).await.map_err(backend)?;
            endpoints = rows.iter().map(endpoint).collect::<Result<_, _>>()?;
        }
        let mut created = 0;
        for e in events {
            let mut body = None;
            for ep in endpoints.iter().filter(|ep| ep.wants(e)) {
                let json = body.get_or_insert_with(|| e.to_json());
                let done = sqlx::query(
                    "INSERT INTO webhook_deliveries (id, endpoint_id, tenant, event_id, \
                     event_type, event, status, next_attempt_at, retry_from, created_at, \
                     updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?) \
                     ON CONFLICT (endpoint_id, event_id) DO NOTHING",
                )
                .bind(ids::new_id(DELIVERY_ID_KIND))
                .bind(&ep.id)
                .bind(ep.tenant.as_str())
                .bind(i64::try_from(e.id).unwrap_or(i64::MAX))
                .bind(e.kind.as_str())
                .bind(json.as_str())
                .bind(ts(now))
                .bind(ts(now))
                .bind(ts(now))
                .bind(ts(now))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                created += done.rows_affected();
            }
        }
        sqlx::query(
            "INSERT INTO webhook_cursor (id, last_event_id) VALUES (1, ?) ON CONFLICT (id) \
             DO UPDATE SET last_event_id = MAX(last_event_id, excluded.last_event_id)",
        )
        .bind(i64::try_from(through).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(created)
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Attempt>, WebhookError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT d.id, d.endpoint_id, d.tenant, d.event_id, d.event_type, d.event, \
             d.attempts, d.claim, d.retry_from, e.url, e.secret, e.previous_secret, \
             e.previous_secret_expires_at \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND e.enabled = 1 \
             ORDER BY d.next_attempt_at, d.id LIMIT ?",
        )
        .bind(ts(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = get(row, "id")?;
            let claim = u64::try_from(get::<i64>(row, "claim")?).unwrap_or(0) + 1;
            sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at = ?, claim = ? WHERE id = ?",
            )
            .bind(ts(lease_until))
            .bind(i64::try_from(claim).unwrap_or(i64::MAX))
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            let mut secrets = vec![SecretString::from(get::<String>(row, "secret")?)];
            let previous: Option<String> = get(row, "previous_secret")?;
            let until: Option<i64> = get(row, "previous_secret_expires_at")?;
            if let (Some(p), Some(u)) = (previous, until)
                && u > ts(now)
            {
                secrets.push(SecretString::from(p));
            }
            let tenant: String = get(row, "tenant")?;
            out.push(Attempt {
                delivery_id: id,
                endpoint_id: get(row, "endpoint_id")?,
                tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant"))?,
                event_id: u64::try_from(get::<i64>(row, "event_id")?)
                    .map_err(|_| corrupt("event id"))?,
                event_type: get(row, "event_type")?,
                body: get(row, "event")?,
                url: get(row, "url")?,
                secrets,
                attempts: u32::try_from(get::<i64>(row, "attempts")?).unwrap_or(u32::MAX),
                retry_from: from_ts(get(row, "retry_from")?)?,
                claim,
            });
        }
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn finish(&self, a: &Attempt, r: &AttemptResult) -> Result<bool, WebhookError> {
        let (status, next, delivered_at) = match r.next {
            Next::Delivered => (DeliveryStatus::Delivered, None, Some(ts(r.at))),
            Next::RetryAt(t) => (DeliveryStatus::Pending, Some(ts(t)), None),
            Next::Dead => (DeliveryStatus::Dead, None, None),
        };
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, \
             next_attempt_at = ?, last_status_code = ?, last_error = ?, updated_at = ?, \
             delivered_at = COALESCE(?, delivered_at), claim = claim + 1 \
             WHERE id = ? AND claim = ? AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(next)
        .bind(r.status_code.map(i64::from))
        .bind(&r.error)
        .bind(ts(r.at))
        .bind(delivered_at)
        .bind(&a.delivery_id)
        .bind(i64::try_from(a.claim).unwrap_or(i64::MAX))
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>, WebhookError> {
        if self.get_endpoint(tenant, endpoint_id).await?.is_none() {
            return Err(WebhookError::NotFound);
        }
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant = "
        ));
        q.push_bind(tenant.as_str())
            .push(" AND endpoint_id = ")
            .push_bind(endpoint_id)
            .push(" AND id > ")
            .push_bind(after.unwrap_or(""));
        if let Some(s) = status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(backend)?;
        rows.iter().map(delivery).collect()
    }

    async fn redeliver(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        delivery_id: &str,
        now: OffsetDateTime,
    ) -> Result<Delivery, WebhookError> {
        let mut tx = self.begin().await?;
        let select = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE tenant = ? AND endpoint_id = ? AND id = ?"
        );
        let row = sqlx::query(&select)
            .bind(tenant.as_str())
            .bind(endpoint_id)
            .bind(delivery_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let current = row
            .as_ref()
            .map(delivery)
            .transpose()?
            .ok_or(WebhookError::NotFound)?;
        if current.status == DeliveryStatus::Pending {
            return Err(WebhookError::DeliveryPending);
        }
        let row = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, \
             retry_from = ?, updated_at = ?, delivered_at = NULL, claim = claim + 1 \
             WHERE tenant = ? AND id = ? RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(ts(now))
        .bind(ts(now))
        .bind(ts(now))
        .bind(tenant.as_str())
        .bind(delivery_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let updated = delivery(&row)?;
        tx.commit().await.map_err(backend)?;
        Ok(updated)
    }

    async fn purge(&self, before: OffsetDateTime) -> Result<u64, WebhookError> {
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < ?",
        )
        .bind(ts(before))
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn rewrite_secrets(&self, f: &SecretRewrite<'_>) -> Result<u64, WebhookError> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query("SELECT id, tenant, secret, previous_secret FROM webhook_endpoints")
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        let mut changed = 0;
        for row in &rows {
            let id: String = get(row, "id")?;
            let tenant: String = get(row, "tenant")?;
            let tenant = TenantId::parse(&tenant).map_err(|_| corrupt("tenant"))?;
            let secret = f(&tenant, &id, &get::<String>(row, "secret")?);
            let previous =
                get::<Option<String>>(row, "previous_secret")?.and_then(|p| f(&tenant, &id, &p));
            if secret.is_none() && previous.is_none() {
                continue;
            }
            changed += u64::from(secret.is_some()) + u64::from(previous.is_some());
            sqlx::query(
                "UPDATE webhook_endpoints SET secret = COALESCE(?, secret), \
                 previous_secret = COALESCE(?, previous_secret) WHERE tenant = ? AND id = ?",
            )
            .bind(secret)
            .bind(previous)
            .bind(tenant.as_str())
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(changed)
    }
}
