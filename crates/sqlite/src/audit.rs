//! The audit log on SQLite: [`SqliteAuditStore`], in a database file of its own (not the key
//! store's), with its own embedded migrations (`migrations_audit/`).
//!
//! Opened like the key store: WAL, `synchronous=NORMAL` (a committed append survives the
//! process being killed; the last transactions before a power loss may not), one write
//! connection whose transactions begin with `BEGIN IMMEDIATE`, a pool of read-only connections.
//! An append is one transaction of multi-row INSERTs, so a batch of records costs a few
//! statements, not one per record.
use std::path::Path;

use async_trait::async_trait;
use portcullis_audit::{
    AuditFilter, AuditStore, AuditStoreError, Checkpoint, CheckpointKind, Columns, Decision,
    Digest, Entry, Head, Kind,
};
use portcullis_core::ids;
use sqlx::{
    QueryBuilder, Row, Sqlite, SqlitePool, Transaction,
    migrate::Migrator,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};

use crate::{BUSY_TIMEOUT, CACHE_KIB, READ_CONNECTIONS};

static AUDIT_MIGRATOR: Migrator = sqlx::migrate!("./migrations_audit");

/// Entries per multi-row INSERT: 11 parameters each, 5,500 per statement (SQLite allows 32,766).
/// With bench-audit, 100, 250 or 1,000 per statement appended no faster.
const ENTRIES_PER_STATEMENT: usize = 500;
/// WAL pages written before the writer checkpoints them into the database file: 16,384 pages of
/// 4 KiB, 64 MiB, instead of SQLite's 1,000 (4 MiB). Appends dirty the same index leaf pages
/// batch after batch; a checkpoint copies each page once however often the WAL holds it, and
/// syncs the files, so fewer checkpoints cost less per record: bench-audit over a million
/// records appended about 1.3 times as fast as with SQLite's default.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;
/// Checkpoints per multi-row INSERT (7 parameters each).
const CHECKPOINTS_PER_STATEMENT: usize = 500;

/// The columns of an entry, in the order [`entry`] reads them.
const ENTRY_COLUMNS: &str =
    "chain, seq, time_micros, kind, action, tenant, key_id, decision, prev_hash, hash, body";

/// The audit store on SQLite. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct SqliteAuditStore {
    /// Exactly one connection: every append or purge goes through it, one at a time.
    write: SqlitePool,
    /// Read-only connections for verification, search and export.
    read: SqlitePool,
}

impl SqliteAuditStore {
    /// Opens the audit database at `path` (e.g. `<data_dir>/audit.sqlite3`), creating it
    /// (readable by its owner only) when missing, and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, AuditStoreError> {
        crate::create_private_file(path).map_err(|e| AuditStoreError::Backend(e.to_string()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            .synchronous(SqliteSynchronous::Normal);
        Self::connect(options).await
    }

    /// A fresh in-memory audit database, private to this store (and its clones); for tests.
    pub async fn open_in_memory() -> Result<Self, AuditStoreError> {
        let name = format!("file:portcullis-audit-{}", ids::new_id("memory"));
        let options = SqliteConnectOptions::new()
            .filename(name)
            .in_memory(true)
            .shared_cache(true);
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self, AuditStoreError> {
        let options = options
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", format!("-{CACHE_KIB}"));
        // Never closed while the store lives: it also keeps an in-memory database alive.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        AUDIT_MIGRATOR
            .run(&write)
            .await
            .map_err(|e| AuditStoreError::Backend(format!("audit migrations: {e}")))?;
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.create_if_missing(false).pragma("query_only", "ON"))
            .await
            .map_err(backend)?;
        Ok(Self { write, read })
    }

    /// Closes every connection (waiting for queries in flight). A file is checkpointed and
    /// left consistent, its WAL folded in.
    ///
    /// The checkpoint is explicit: SQLite's checkpoint when the last connection closes is not
    /// enough, since a pool's `close` can return while a connection that was just released is
    /// still on its way back to the pool (and closes later, after the caller copied the file).
    pub async fn close(&self) {
        self.read.close().await;
        // Best effort: on failure the WAL keeps the appends, and SQLite folds it in later.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.write)
            .await;
        self.write.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, AuditStoreError> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn heads(&self) -> Result<Vec<(String, Head)>, AuditStoreError> {
        // Each chain's last entry through the primary key: the chains by a skip scan, then the
        // highest seq of each, without reading the whole table.
        let rows = sqlx::query(
            "WITH RECURSIVE c(chain) AS ( \
                 SELECT MIN(chain) FROM audit_entries \
                 UNION ALL \
                 SELECT (SELECT MIN(chain) FROM audit_entries WHERE chain > c.chain) \
                 FROM c WHERE c.chain IS NOT NULL) \
             SELECT e.chain, e.seq, e.hash FROM c JOIN audit_entries e ON e.chain = c.chain \
             AND e.seq = (SELECT MAX(seq) FROM audit_entries WHERE chain = c.chain)",
        )
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let head = Head {
                    seq: seq(r, 1)?,
                    hash: digest(r, 2)?,
                };
                Ok((r.try_get(0).map_err(corrupt)?, head))
            })
            .collect()
    }

    async fn append(
        &self,
        entries: &[Entry],
        checkpoints: &[Checkpoint],
    ) -> Result<(), AuditStoreError> {
        let mut tx = self.begin().await?;
        for chunk in entries.chunks(ENTRIES_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit_entries (chain, seq, time_micros, kind, action, tenant, \
                 key_id, decision, prev_hash, hash, body) ",
            );
            let mut bad = None;
            q.push_values(chunk, |mut b, e| {
                let seq = i64::try_from(e.seq).unwrap_or_else(|_| {
                    bad = Some(e.seq);
                    -1
                });
                let c = &e.columns;
                b.push_bind(e.chain.as_str())
                    .push_bind(seq)
                    .push_bind(c.time_micros)
                    .push_bind(c.kind.as_str())
                    .push_bind(c.action.as_str())
                    .push_bind(c.tenant.as_deref())
                    .push_bind(c.key_id.as_deref())
                    .push_bind(c.decision.map(Decision::as_str))
                    .push_bind(&e.prev_hash.0[..])
                    .push_bind(&e.hash.0[..])
                    .push_bind(e.body.as_str());
            });
            if let Some(s) = bad {
                return Err(AuditStoreError::Backend(format!(
                    "sequence {s} out of range"
                )));
            }
            q.build().execute(&mut *tx).await.map_err(backend)?;
        }
        for chunk in checkpoints.chunks(CHECKPOINTS_PER_STATEMENT) {
            insert_checkpoints(&mut tx, chunk).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn chains(&self) -> Result<Vec<String>, AuditStoreError> {
        sqlx::query_scalar(
            "WITH RECURSIVE c(chain) AS ( \
                 SELECT MIN(chain) FROM audit_entries \
                 UNION ALL \
                 SELECT (SELECT MIN(chain) FROM audit_entries WHERE chain > c.chain) \
                 FROM c WHERE c.chain IS NOT NULL) \
             SELECT chain FROM c WHERE chain IS NOT NULL \
             UNION SELECT chain FROM audit_checkpoints ORDER BY 1",
        )
        .fetch_all(&self.read)
        .await
        .map_err(backend)
    }

    async fn entries(
        &self,
        chain: &str,
        from_seq: u64,
        to_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Entry>, AuditStoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_entries \
             WHERE chain = ? AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(chain)
            .bind(clamp(from_seq))
            .bind(to_seq.map_or(i64::MAX, clamp))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        rows.iter().map(entry).collect()
    }

    async fn search(
        &self,
        chain: &str,
        filter: &AuditFilter,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Entry>, AuditStoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE chain = "
        ));
        q.push_bind(chain)
            .push(" AND seq > ")
            .push_bind(clamp(after_seq));
        if let Some(since) = filter.since_micros {
            q.push(" AND time_micros >= ").push_bind(since);
        }
        if let Some(until) = filter.until_micros {
            q.push(" AND time_micros < ").push_bind(until);
        }
        if let Some(key_id) = &filter.key_id {
            q.push(" AND key_id = ").push_bind(key_id.as_str());
        }
        if let Some(action) = &filter.action {
            q.push(" AND action = ").push_bind(action.as_str());
        }
        if let Some(kind) = filter.kind {
            q.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(decision) = filter.decision {
            q.push(" AND decision = ").push_bind(decision.as_str());
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(backend)?;
        rows.iter().map(entry).collect()
    }

    async fn checkpoints(&self, chain: &str) -> Result<Vec<Checkpoint>, AuditStoreError> {
        let rows = sqlx::query(
            "SELECT chain, seq, kind, time_nanos, hash, signer, signature \
             FROM audit_checkpoints WHERE chain = ? ORDER BY seq, kind",
        )
        .bind(chain)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter().map(checkpoint).collect()
    }

    async fn first_seq_since(
        &self,
        chain: &str,
        time_micros: i64,
    ) -> Result<Option<u64>, AuditStoreError> {
        let row = sqlx::query(
            // The chain in sequence order up to the first match (`+` keeps the time index out):
            // retention asks for an old cutoff, so few entries come before it.
            "SELECT seq FROM audit_entries WHERE chain = ? AND +time_micros >= ? \
             ORDER BY seq LIMIT 1",
        )
        .bind(chain)
        .bind(time_micros)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.map(|r| seq(&r, 0)).transpose()
    }

    async fn purge(&self, chain: &str, anchor: &Checkpoint) -> Result<u64, AuditStoreError> {
        if anchor.chain != chain || anchor.kind != CheckpointKind::Retention {
            return Err(AuditStoreError::Backend(format!(
                "purge of chain {chain} needs a retention checkpoint of that chain"
            )));
        }
        let mut tx = self.begin().await?;
        // The anchor must sign the stored entry it names, or what is kept would not verify.
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM audit_entries WHERE chain = ? AND seq = ?")
                .bind(chain)
                .bind(clamp(anchor.seq))
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if stored.is_some_and(|h| h != anchor.hash.0) {
            return Err(AuditStoreError::Backend(format!(
                "retention checkpoint of chain {chain} at {} names another hash than the \
                 stored entry",
                anchor.seq
            )));
        }
        let removed = sqlx::query("DELETE FROM audit_entries WHERE chain = ? AND seq <= ?")
            .bind(chain)
            .bind(clamp(anchor.seq))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        insert_checkpoints(&mut tx, std::slice::from_ref(anchor)).await?;
        tx.commit().await.map_err(backend)?;
        Ok(removed)
    }
}

async fn insert_checkpoints(
    tx: &mut Transaction<'static, Sqlite>,
    checkpoints: &[Checkpoint],
) -> Result<(), AuditStoreError> {
    let values = checkpoints
        .iter()
        .map(|c| {
            let seq = i64::try_from(c.seq);
            let nanos = i64::try_from(c.time.unix_timestamp_nanos());
            match (seq, nanos) {
                (Ok(s), Ok(n)) => Ok((c, s, n)),
                _ => Err(AuditStoreError::Backend(format!(
                    "checkpoint of chain {} at {} out of range",
                    c.chain, c.seq
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO audit_checkpoints (chain, seq, kind, time_nanos, hash, signer, signature) ",
    );
    q.push_values(values, |mut b, (c, seq, nanos)| {
        b.push_bind(c.chain.as_str())
            .push_bind(seq)
            .push_bind(c.kind.as_str())
            .push_bind(nanos)
            .push_bind(&c.hash.0[..])
            .push_bind(c.signer.as_str())
            .push_bind(&c.signature[..]);
    });
    q.build().execute(&mut **tx).await.map_err(backend)?;
    Ok(())
}

/// A sequence number as SQLite's INTEGER (numbers past `i64::MAX` are never stored).
fn clamp(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A database failure (locked, I/O, a constraint): the text is for logs only.
fn backend(e: sqlx::Error) -> AuditStoreError {
    AuditStoreError::Backend(e.to_string())
}

fn corrupt(e: sqlx::Error) -> AuditStoreError {
    AuditStoreError::Corrupt(e.to_string())
}

fn seq(r: &SqliteRow, i: usize) -> Result<u64, AuditStoreError> {
    let v: i64 = r.try_get(i).map_err(corrupt)?;
    u64::try_from(v).map_err(|_| AuditStoreError::Corrupt(format!("sequence number {v}")))
}

fn digest(r: &SqliteRow, i: usize) -> Result<Digest, AuditStoreError> {
    let b: Vec<u8> = r.try_get(i).map_err(corrupt)?;
    Digest::from_slice(&b)
        .ok_or_else(|| AuditStoreError::Corrupt(format!("hash of {} bytes", b.len())))
}

fn parse_kind(s: &str) -> Option<Kind> {
    [Kind::Request, Kind::Auth, Kind::Change, Kind::Maintenance]
        .into_iter()
        .find(|k| k.as_str() == s)
}

/// Reads a row of [`ENTRY_COLUMNS`].
fn entry(r: &SqliteRow) -> Result<Entry, AuditStoreError> {
    let chain: String = r.try_get(0).map_err(corrupt)?;
    let seq = seq(r, 1)?;
    let at = |what: &str| AuditStoreError::Corrupt(format!("entry {seq} of {chain}: {what}"));
    let kind: String = r.try_get(3).map_err(corrupt)?;
    let decision: Option<String> = r.try_get(7).map_err(corrupt)?;
    let columns = Columns {
        time_micros: r.try_get(2).map_err(corrupt)?,
        kind: parse_kind(&kind).ok_or_else(|| at("unknown kind"))?,
        action: r.try_get(4).map_err(corrupt)?,
        tenant: r.try_get(5).map_err(corrupt)?,
        key_id: r.try_get(6).map_err(corrupt)?,
        decision: match decision {
            None => None,
            Some(d) => Some(Decision::parse(&d).ok_or_else(|| at("unknown decision"))?),
        },
    };
    Ok(Entry {
        prev_hash: digest(r, 8).map_err(|_| at("previous hash"))?,
        hash: digest(r, 9).map_err(|_| at("hash"))?,
        body: r.try_get(10).map_err(corrupt)?,
        columns,
        seq,
        chain,
    })
}

fn checkpoint(r: &SqliteRow) -> Result<Checkpoint, AuditStoreError> {
    let chain: String = r.try_get(0).map_err(corrupt)?;
    let seq = seq(r, 1)?;
    let at = |what: &str| AuditStoreError::Corrupt(format!("checkpoint {seq} of {chain}: {what}"));
    let kind: String = r.try_get(2).map_err(corrupt)?;
    let nanos: i64 = r.try_get(3).map_err(corrupt)?;
    let signature: Vec<u8> = r.try_get(6).map_err(corrupt)?;
    Ok(Checkpoint {
        kind: CheckpointKind::parse(&kind).ok_or_else(|| at("unknown kind"))?,
        time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .map_err(|_| at("time"))?,
        hash: digest(r, 4).map_err(|_| at("hash"))?,
        signer: r.try_get(5).map_err(corrupt)?,
        signature: signature.try_into().map_err(|_| at("signature length"))?,
        seq,
        chain,
    })
}
