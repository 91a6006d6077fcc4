//! portcullis-sqlite: the embedded default storage backend.
//!
//! One database file in WAL mode (`synchronous=NORMAL`, foreign keys on, busy timeout 5 s),
//! its schema applied by embedded migrations (`migrations/`). Every change is one transaction
//! on a **write pool of exactly one connection**, begun with `BEGIN IMMEDIATE`: read-then-write
//! transactions take the write lock up front and never meet the `SQLITE_BUSY` of a lock upgrade,
//! also when a second process (the CLI beside a running server) writes to the same file. Reads
//! go through a pool of [`READ_CONNECTIONS`] read-only (`query_only`) connections.
//!
//! Timestamps are stored as INTEGER unix seconds, scopes / IP allowlists / metadata / rate
//! limits / a tenant's ceilings as JSON TEXT, key hashes as 32-byte BLOBs. A key's secret is never stored.
#![forbid(unsafe_code)]

use std::{path::Path, time::Duration};

use portcullis_core::ids;
use portcullis_store::{Result, StoreError};
use sqlx::{
    Sqlite, SqlitePool, Transaction,
    error::ErrorKind,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// Columns of a tenant (table aliased `t`), in the order `rows::tenant` reads them.
macro_rules! tenant_columns {
    () => {
        "t.id, t.name, t.status, t.key_prefix, t.max_key_lifetime_seconds, t.created_at, \
         t.updated_at, t.rate_limit, t.allowed_scopes, t.max_key_rate_limit"
    };
}

/// Columns of a key (table aliased `k`), in the order `rows::api_key` reads them;
/// [`rows::KEY_COLUMNS`] columns, extra columns of a query follow.
macro_rules! key_columns {
    () => {
        "k.id, k.tenant_id, k.environment, k.name, k.scopes, k.hint, k.ip_allowlist, \
         k.metadata, k.external_id, k.created_at, k.updated_at, k.expires_at, k.revoked_at, \
         k.last_used_at, k.rate_limit"
    };
}

/// Columns of an admin key (table aliased `a`), in the order `rows::admin_key` reads them.
macro_rules! admin_columns {
    () => {
        "a.id, a.name, a.tenant_id, a.scopes, a.hint, a.created_at, a.revoked_at, a.last_used_at"
    };
}

pub mod audit;
mod bulk;
pub mod events;
mod feed;
mod queries;
mod rows;
mod store;
pub mod webhooks;

/// Connections of the read pool.
pub const READ_CONNECTIONS: u32 = 4;
/// How long a connection waits for a lock held by another connection or process.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of each connection, in KiB.
const CACHE_KIB: u32 = 16 * 1024;

pub use audit::SqliteAuditStore;
pub use events::SqliteEventStore;
pub use webhooks::SqliteWebhookStore;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The SQLite store. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every change goes through it, one transaction at a time.
    write: SqlitePool,
    /// Read-only connections for queries.
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it (readable by its owner only) when missing, and
    /// applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        create_private_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        Self::connect(options).await
    }

    /// A fresh in-memory database, private to this store (and its clones); for tests. It is
    /// shared between the pools' connections and lives until the store is closed or dropped.
    pub async fn memory() -> Result<Self> {
        let name = format!("file:portcullis-{}", ids::new_id("memory"));
        let options = SqliteConnectOptions::new()
            .filename(name)
            .in_memory(true)
            .shared_cache(true);
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self> {
        let (write, read) = open_pools(options.foreign_keys(true), &MIGRATOR)
            .await
            .map_err(StoreError::Backend)?;
        Ok(Self { write, read })
    }

    /// Closes every connection (waiting for queries in flight). An in-memory database is gone
    /// afterwards; a file is checkpointed and left consistent.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Begins a change: a transaction on the write connection holding the write lock.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }
}

/// The pools of a database: exactly one write connection, never closed while the pool lives (it
/// also keeps an in-memory database alive), on which `migrator` runs, and [`READ_CONNECTIONS`]
/// read-only connections. The error text is for logs only.
///
/// Connections are not pinged before each use (sqlx's default for networked databases): a
/// connection to a file in this process cannot go stale, and a ping is one more round trip to
/// the connection's thread (a thread wake-up) for every statement or transaction.
pub(crate) async fn open_pools(
    options: SqliteConnectOptions,
    migrator: &Migrator,
) -> std::result::Result<(SqlitePool, SqlitePool), String> {
    let options = options
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("cache_size", format!("-{CACHE_KIB}"));
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await
        .map_err(|e| e.to_string())?;
    migrator
        .run(&write)
        .await
        .map_err(|e| format!("migrations: {e}"))?;
    let read = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .test_before_acquire(false)
        .connect_with(options.create_if_missing(false).pragma("query_only", "ON"))
        .await
        .map_err(|e| e.to_string())?;
    Ok((write, read))
}

/// Creates `path` with mode 0600 when it does not exist, so that the database (and its WAL and
/// shared-memory files, which SQLite creates with the same mode) is private to its owner.
fn create_private_file(path: &Path) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "create {}: {e}",
            path.display()
        ))),
    }
}

/// Maps a database error: a unique violation is a conflict, a foreign key violation a missing
/// parent (tenant), anything else a backend failure (its text for logs only).
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        match d.kind() {
            ErrorKind::UniqueViolation => return StoreError::Conflict,
            ErrorKind::ForeignKeyViolation => return StoreError::NotFound,
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}
