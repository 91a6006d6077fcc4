//! The embedded event backend: [`SqliteEventStore`], in a database file of its own
//! (`events.sqlite3`, migrations in `migrations_events/`), broadcast in-process.
//!
//! Ids are SQLite's AUTOINCREMENT row ids: assigned in commit order (one writer at a time, also
//! across processes), never reused. The live feed hands out every stored event in id order,
//! whoever stored it: after each publish, and every [`POLL_INTERVAL`] for events another process
//! (the operator CLI) stored, the store sends the events after the last one it sent, under one
//! lock. So a live reader never sees a smaller id after a larger one.
use std::{path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use portcullis_core::{ids, tenant::TenantId};
use portcullis_events::{
    Event, EventBackend, EventError, EventType, NewEvent, Scope, model::SYSTEM_TENANT,
};
use sqlx::{
    QueryBuilder, Row, Sqlite, SqlitePool,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous},
};
use time::OffsetDateTime;
use tokio::sync::{Mutex, broadcast};

pub(crate) static EVENTS_MIGRATOR: Migrator = sqlx::migrate!("./migrations_events");

/// How often the live feed looks for events stored by another process.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Events the shared live feed holds for its slowest reader (a reader further behind reads the
/// missed ones back from the database).
pub const LIVE_CAPACITY: usize = 4096;
/// Events read per query when the live feed catches up.
const CATCH_UP_PAGE: i64 = 1000;
/// Rows per multi-row INSERT (6 parameters each).
const ROWS_PER_STATEMENT: usize = 1000;

/// The embedded event store. Dropping it stops its poller.
#[derive(Debug)]
pub struct SqliteEventStore {
    inner: Arc<Inner>,
    poller: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Inner {
    write: SqlitePool,
    read: SqlitePool,
    live: broadcast::Sender<Arc<Event>>,
    /// The id of the last event sent to the live feed.
    sent: Mutex<u64>,
}

fn backend(e: sqlx::Error) -> EventError {
    EventError::Backend(format!("events database: {e}"))
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn from_micros(m: i64) -> Result<OffsetDateTime, EventError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000)
        .map_err(|_| EventError::Backend("events database: time out of range".into()))
}

fn row_event(row: &SqliteRow) -> Result<Event, EventError> {
    let id: i64 = row.try_get("id").map_err(backend)?;
    let tenant: String = row.try_get("tenant").map_err(backend)?;
    let kind: String = row.try_get("type").map_err(backend)?;
    let time: i64 = row.try_get("time").map_err(backend)?;
    let data: String = row.try_get("data").map_err(backend)?;
    let corrupt =
        |what: &str| EventError::Backend(format!("events database: bad {what} in row {id}"));
    Ok(Event {
        id: u64::try_from(id).map_err(|_| corrupt("id"))?,
        kind: EventType::parse(&kind).ok_or_else(|| corrupt("type"))?,
        tenant: if tenant == SYSTEM_TENANT {
            None
        } else {
            Some(TenantId::parse(&tenant).map_err(|_| corrupt("tenant"))?)
        },
        time: from_micros(time)?,
        data: serde_json::from_str(&data).map_err(|_| corrupt("data"))?,
    })
}

impl SqliteEventStore {
    /// Opens the events database at `path`, creating it (readable by its owner only) when
    /// missing, applies pending migrations and starts the live feed's poller (so it needs a
    /// tokio runtime).
    pub async fn open(path: &Path) -> Result<Self, EventError> {
        crate::create_private_file(path).map_err(|e| EventError::Backend(e.to_string()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        Self::connect(options).await
    }

    /// A fresh in-memory events database, private to this store; for tests.
    pub async fn open_in_memory() -> Result<Self, EventError> {
        let name = format!("file:portcullis-events-{}", ids::new_id("memory"));
        let options = SqliteConnectOptions::new()
            .filename(name)
            .in_memory(true)
            .shared_cache(true);
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self, EventError> {
        let (write, read) = crate::open_pools(options, &EVENTS_MIGRATOR)
            .await
            .map_err(|e| EventError::Backend(format!("events database: {e}")))?;
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let inner = Arc::new(Inner {
            write,
            read,
            live,
            sent: Mutex::new(0),
        });
        *inner.sent.lock().await = inner.last_id().await?;
        let weak = Arc::downgrade(&inner);
        let poller = tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                // A failed read is retried at the next tick.
                let _ = inner.catch_up().await;
            }
        });
        Ok(Self { inner, poller })
    }

    /// The webhook store on this database's pools (endpoints, deliveries and the fan-out
    /// cursor live beside the events).
    pub fn webhooks(&self) -> crate::webhooks::SqliteWebhookStore {
        crate::webhooks::SqliteWebhookStore::from_pools(
            self.inner.write.clone(),
            self.inner.read.clone(),
        )
    }

    /// Closes every connection; the file is checkpointed (its WAL folded in).
    pub async fn close(&self) {
        self.poller.abort();
        self.inner.read.close().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.inner.write)
            .await;
        self.inner.write.close().await;
    }
}

impl Drop for SqliteEventStore {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Inner {
    async fn last_id(&self) -> Result<u64, EventError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(&self.read)
            .await
            .map_err(backend)?;
        Ok(id.and_then(|i| u64::try_from(i).ok()).unwrap_or(0))
    }

    /// Sends the stored events after the last one sent, in id order. Reads through the write
    /// connection, which sees every commit, its own included.
    async fn catch_up(&self) -> Result<(), EventError> {
        let mut sent = self.sent.lock().await;
        loop {
            let rows = sqlx::query(
                "SELECT id, tenant, type, time, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
            )
            .bind(i64::try_from(*sent).unwrap_or(i64::MAX))
            .bind(CATCH_UP_PAGE)
            .fetch_all(&self.write)
            .await
            .map_err(backend)?;
            let n = rows.len();
            for row in &rows {
                let e = row_event(row)?;
                *sent = e.id;
                // No live reader is not an error.
                let _ = self.live.send(Arc::new(e));
            }
            if i64::try_from(n).unwrap_or(0) < CATCH_UP_PAGE {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl EventBackend for SqliteEventStore {
    async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, EventError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut sent = self.inner.sent.lock().await;
        let mut tx = self
            .inner
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let mut stored = Vec::with_capacity(events.len());
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO events (msg_id, tenant, type, time, data) ");
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&e.msg_id)
                    .push_bind(e.tenant_token())
                    .push_bind(e.kind.as_str())
                    .push_bind(micros(e.time))
                    .push_bind(e.data.to_string());
            });
            q.push(" ON CONFLICT (msg_id) DO NOTHING RETURNING id, msg_id");
            let rows = q.build().fetch_all(&mut *tx).await.map_err(backend)?;
            for row in rows {
                let id: i64 = row.try_get("id").map_err(backend)?;
                let msg_id: String = row.try_get("msg_id").map_err(backend)?;
                stored.push((u64::try_from(id).unwrap_or(0), msg_id));
            }
        }
        tx.commit().await.map_err(backend)?;
        // RETURNING gives no order guarantee: match rows to events by message id.
        stored.sort_unstable_by_key(|(id, _)| *id);
        let mut by_msg: std::collections::HashMap<String, NewEvent> =
            events.into_iter().map(|e| (e.msg_id.clone(), e)).collect();
        let out: Vec<Event> = stored
            .into_iter()
            .filter_map(|(id, msg)| by_msg.remove(&msg).map(|e| e.into_event(id)))
            .collect();
        // The common case: nothing was stored by another process since the last send, so the
        // new events follow it directly and are sent without reading them back.
        let follows = out
            .iter()
            .enumerate()
            .all(|(i, e)| e.id == *sent + 1 + i as u64);
        if follows {
            for e in &out {
                *sent = e.id;
                let _ = self.inner.live.send(Arc::new(e.clone()));
            }
        } else {
            drop(sent);
            self.inner.catch_up().await?;
        }
        Ok(out)
    }

    async fn read_after(
        &self,
        after: u64,
        scope: &Scope,
        limit: usize,
    ) -> Result<Vec<Event>, EventError> {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT id, tenant, type, time, data FROM events WHERE id > ");
        q.push_bind(i64::try_from(after).unwrap_or(i64::MAX));
        if let Some(t) = &scope.tenant {
            q.push(" AND tenant = ").push_bind(t.as_str().to_owned());
        }
        if !scope.types.is_all() {
            q.push(" AND type IN (");
            let mut sep = q.separated(", ");
            for t in scope.types.iter() {
                sep.push_bind(t.as_str());
            }
            q.push(")");
        }
        q.push(" ORDER BY id LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = q
            .build()
            .fetch_all(&self.inner.read)
            .await
            .map_err(backend)?;
        rows.iter().map(row_event).collect()
    }

    fn live(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.live.subscribe()
    }

    async fn last_id(&self) -> Result<u64, EventError> {
        self.inner.last_id().await
    }

    async fn purge(&self, before: OffsetDateTime) -> Result<u64, EventError> {
        let done = sqlx::query("DELETE FROM events WHERE time < ?")
            .bind(micros(before))
            .execute(&self.inner.write)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }
}
