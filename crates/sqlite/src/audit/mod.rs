//! The audit log on SQLite: [`SqliteAuditStore`], in a database file of its own (not the key
//! store's), with its own embedded migrations (`migrations_audit/`).
//!
//! Entries are stored in **blocks**: an append stores one row per chain, the chain's entries of
//! that append encoded one after the other and compressed (LZ4) in a BLOB ([`codec`]), with the
//! block's sequence range, time range and last hash beside it for range queries and heads. One
//! row per record paid SQLite's per-row cost (B-tree inserts into the table and its indexes) for
//! every record: about 10 µs a record at batches of 1,000 on the benchmark machine, against about
//! 3 µs in plain blocks and 1.3 µs in compressed ones, which are about a fifth of the size
//! (`bench-audit`, docs/benchmarks.md). The query columns of an entry (time, kind, action,
//! key…) are not stored: they are read back from the sealed body, so they cannot drift from it.
//! Searches read the blocks that overlap the range and filter in Rust, a few blocks at a time.
//!
//! Opened like the key store: WAL, `synchronous=NORMAL` (a committed append survives the
//! process being killed), one write connection whose transactions begin with
//! `BEGIN IMMEDIATE`, a pool of read-only connections. An append is one statement list
//! (`BEGIN IMMEDIATE; INSERT …; COMMIT`), one round trip to the connection's thread. A block
//! must start right after its chain's last stored entry (a trigger checks it in the append's
//! transaction): an append that collides with another writer's fails as a whole, and the
//! server's writer, seeing the stored heads moved, seals its batch again after them.
//!
//! The table has rowids (blocks are stored in append order, an append's blocks in the same few
//! pages), with a unique index on `(chain, first_seq)`: a WITHOUT ROWID table put each chain's
//! block on a page of its own plus overflow pages, and wrote more pages per small append.
mod checkpoints;
mod codec;
mod keys;
mod purge;

use std::{
    ops::ControlFlow,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use async_trait::async_trait;
use portcullis_audit::{
    AuditFilter, AuditStore, AuditStoreError, Checkpoint, Columns, Entry, Head, KeyLink,
    record::micros,
};
use portcullis_core::ids;
use sqlx::{
    Executor as _, QueryBuilder, Row, Sqlite, SqlitePool, Transaction,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

use self::{
    checkpoints::{backend, clamp, corrupt, digest, seq},
    codec::{Entries, Raw},
};

/// A stored block's bytes in the plain layout (1), from either layout, and back to the
/// compressed layout appends write: for tools and tests that read or alter blocks in the file
/// directly (the layouts are described in the codec module's documentation).
pub use self::codec::{pack as pack_block, unpack as unpack_block};

static AUDIT_MIGRATOR: Migrator = sqlx::migrate!("./migrations_audit");

/// Blocks per multi-row INSERT: 7 parameters each (SQLite allows 32,766).
const BLOCKS_PER_STATEMENT: usize = 1_000;
/// Blocks read by the first query of a scan. Each further query reads up to twice as many, as
/// many as fit in [`BYTES_PER_READ`] at the size of the blocks read so far, at most
/// [`MAX_BLOCKS_PER_READ`]: small reads stay small, long ones take few queries, and memory
/// stays bounded by about a MiB (or one block, when a block is larger).
const BLOCKS_PER_READ: i64 = 4;
const MAX_BLOCKS_PER_READ: i64 = 64;
const BYTES_PER_READ: usize = 1 << 20;
/// WAL pages written before the writer checkpoints them into the database file: 1 MiB instead
/// of SQLite's 4 MiB. A checkpoint copies the WAL's pages into the file on the writer's thread,
/// which shares the core with the server's: measured behind the gateway at 13,000 req/s on one
/// core, 64 MiB checkpoints stalled requests for hundreds of milliseconds (p99 0.4–1.3 s), 4 MiB
/// ones for tens (p99 7 ms, 0.4 s), 1 MiB ones p99 1.4–2 ms against 0.5–0.8 ms with the audit log
/// off. Pure append throughput is about a quarter lower than with 64 MiB (`bench-audit`).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 256;

/// The audit store on SQLite, in blocks. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct SqliteAuditStore {
    /// Exactly one connection: every append or purge goes through it, one at a time.
    write: SqlitePool,
    /// Read-only connections for verification, search and export.
    read: SqlitePool,
    /// Where appends encode their blocks (one append at a time holds it, without awaiting).
    scratch: Arc<Mutex<codec::Scratch>>,
}

/// The part of a chain a scan reads: entries `from..=to`, in blocks whose time range meets
/// `since..until`.
#[derive(Debug, Clone, Copy)]
struct Range {
    from: u64,
    to: u64,
    since: Option<i64>,
    until: Option<i64>,
}

impl Range {
    fn seqs(from: u64, to: u64) -> Self {
        Self {
            from,
            to,
            since: None,
            until: None,
        }
    }
}

impl SqliteAuditStore {
    /// Opens the audit database at `path`, creating it (readable by its owner only) when
    /// missing, and applies pending migrations.
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
        let name = format!("file:portcullis-audit-blocks-{}", ids::new_id("memory"));
        let options = SqliteConnectOptions::new()
            .filename(name)
            .in_memory(true)
            .shared_cache(true);
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self, AuditStoreError> {
        let (write, read) = crate::open_pools(options, &AUDIT_MIGRATOR)
            .await
            .map_err(|e| AuditStoreError::Backend(format!("audit database: {e}")))?;
        Ok(Self {
            write,
            read,
            scratch: Arc::default(),
        })
    }

    /// Closes every connection (waiting for queries in flight). A file is checkpointed and
    /// left consistent, its WAL folded in: explicitly, as SQLite's checkpoint when the last
    /// connection closes is not enough — a pool's `close` can return while a connection just
    /// released is still on its way back to the pool (and closes later, after the caller
    /// copied the file).
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

    /// Hands the entries of `chain` in `range` to `visit` in stored order (sequence order
    /// unless tampered with), from the block holding `range.from`, until `visit` breaks or an
    /// entry past `range.to` comes. A block that cannot be decoded is an error where decoding
    /// stops, after the entries before it were visited.
    async fn scan(
        &self,
        chain: &str,
        range: Range,
        mut visit: impl FnMut(Raw<'_>) -> Result<ControlFlow<()>, AuditStoreError>,
    ) -> Result<(), AuditStoreError> {
        let mut after: i64 = -1;
        let mut per_read = BLOCKS_PER_READ;
        loop {
            // The block holding `from` is the last one starting at or before it.
            let rows = sqlx::query(
                "SELECT first_seq, data FROM audit_blocks WHERE chain = ? \
                 AND first_seq >= max(?, (SELECT coalesce(max(first_seq), 0) FROM audit_blocks \
                     WHERE chain = ? AND first_seq <= ?)) \
                 AND first_seq <= ? AND max_time_micros >= ? AND min_time_micros < ? \
                 ORDER BY first_seq LIMIT ?",
            )
            .bind(chain)
            .bind(after + 1)
            .bind(chain)
            .bind(clamp(range.from))
            .bind(clamp(range.to))
            .bind(range.since.unwrap_or(i64::MIN))
            .bind(range.until.unwrap_or(i64::MAX))
            .bind(per_read)
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
            let mut bytes = 0;
            for r in &rows {
                let first = seq(r, 0)?;
                let stored: &[u8] = r.try_get(1).map_err(corrupt)?;
                bytes += stored.len();
                let data = codec::unpack(stored)?;
                for raw in Entries::new(chain, first, &data) {
                    let raw = raw?;
                    if raw.seq < range.from {
                        continue;
                    }
                    if raw.seq > range.to || visit(raw)?.is_break() {
                        return Ok(());
                    }
                }
                after = clamp(first);
            }
            if rows.len() < usize::try_from(per_read).unwrap_or(usize::MAX) {
                return Ok(());
            }
            let fit = BYTES_PER_READ / (bytes / rows.len()).max(1);
            per_read = (per_read * 2)
                .min(i64::try_from(fit).unwrap_or(i64::MAX))
                .clamp(1, MAX_BLOCKS_PER_READ);
        }
    }
}

/// A statement listing the distinct chains of `audit_blocks` (a skip scan of the primary key,
/// never the whole table) as `c(chain)`, with a NULL row last.
const CHAINS_CTE: &str = "WITH RECURSIVE c(chain) AS ( \
     SELECT MIN(chain) FROM audit_blocks \
     UNION ALL \
     SELECT (SELECT MIN(chain) FROM audit_blocks WHERE chain > c.chain) \
     FROM c WHERE c.chain IS NOT NULL) ";

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn heads(&self) -> Result<Vec<(String, Head)>, AuditStoreError> {
        let rows = sqlx::query(&format!(
            "{CHAINS_CTE} SELECT b.chain, b.last_seq, b.last_hash FROM c \
             JOIN audit_blocks b ON b.chain = c.chain AND b.first_seq = \
             (SELECT MAX(first_seq) FROM audit_blocks WHERE chain = c.chain)"
        ))
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
        let blocks = {
            let mut scratch = self.scratch.lock().unwrap_or_else(PoisonError::into_inner);
            codec::blocks(entries, &mut scratch)?
        };
        if blocks.is_empty() && checkpoints.is_empty() {
            return Ok(());
        }
        // The whole transaction in one statement list, so one round trip to the connection's
        // worker thread: on a busy machine each costs a thread wake-up, which small appends feel.
        let mut q = QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; ");
        for chunk in blocks.chunks(BLOCKS_PER_STATEMENT) {
            q.push(
                "INSERT INTO audit_blocks (chain, first_seq, last_seq, min_time_micros, \
                 max_time_micros, last_hash, data) ",
            );
            let mut bad = None;
            q.push_values(chunk, |mut b, block| {
                let (first, last) = match (i64::try_from(block.first), i64::try_from(block.last)) {
                    (Ok(f), Ok(l)) => (f, l),
                    _ => {
                        bad = Some(block.last);
                        (-1, -1)
                    }
                };
                b.push_bind(block.chain)
                    .push_bind(first)
                    .push_bind(last)
                    .push_bind(block.min_time)
                    .push_bind(block.max_time)
                    .push_bind(&block.last_hash.0[..])
                    .push_bind(&block.data[..]);
            });
            if let Some(s) = bad {
                return Err(AuditStoreError::Backend(format!(
                    "sequence {s} out of range"
                )));
            }
            q.push("; ");
        }
        checkpoints::push_inserts(&mut q, checkpoints)?;
        q.push("COMMIT");
        let mut conn = self.write.acquire().await.map_err(backend)?;
        let done = q.build().execute(&mut *conn).await;
        if let Err(e) = done {
            // A statement failed (a conflict, a full disk) and the ones after it did not run:
            // the transaction is still open. Rolled back here, nothing of the append is kept;
            // the error of a ROLLBACK without a transaction (BEGIN failed) is of no interest.
            let _ = conn.execute("ROLLBACK").await;
            return Err(backend(e));
        }
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<KeyLink>, AuditStoreError> {
        keys::links(&self.read).await
    }

    async fn add_signing_key(&self, link: &KeyLink) -> Result<bool, AuditStoreError> {
        keys::add(&self.write, link).await
    }

    async fn chains(&self) -> Result<Vec<String>, AuditStoreError> {
        sqlx::query_scalar(&format!(
            "{CHAINS_CTE} SELECT chain FROM c WHERE chain IS NOT NULL \
             UNION SELECT chain FROM audit_checkpoints ORDER BY 1"
        ))
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
        let limit = limit as usize;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let range = Range::seqs(from_seq, to_seq.unwrap_or(u64::MAX));
        self.scan(chain, range, |raw| {
            out.push(codec::entry(chain, &raw)?);
            Ok(if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .await?;
        Ok(out)
    }

    async fn search(
        &self,
        chain: &str,
        filter: &AuditFilter,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Entry>, AuditStoreError> {
        let limit = limit as usize;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let range = Range {
            since: filter.since_micros,
            until: filter.until_micros,
            ..Range::seqs(after_seq.saturating_add(1), u64::MAX)
        };
        self.scan(chain, range, |raw| {
            let (entry, record) = codec::entry_and_record(chain, &raw)?;
            if filter.matches(&Columns::of(&record)) {
                out.push(entry);
            }
            Ok(if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .await?;
        Ok(out)
    }

    async fn checkpoints(&self, chain: &str) -> Result<Vec<Checkpoint>, AuditStoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM audit_checkpoints WHERE chain = ? ORDER BY seq, kind",
            checkpoints::COLUMNS
        ))
        .bind(chain)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter().map(checkpoints::read).collect()
    }

    async fn first_seq_since(
        &self,
        chain: &str,
        time_micros: i64,
    ) -> Result<Option<u64>, AuditStoreError> {
        let mut found = None;
        let range = Range {
            since: Some(time_micros),
            ..Range::seqs(0, u64::MAX)
        };
        self.scan(chain, range, |raw| {
            if micros(codec::record(chain, &raw)?.time) >= time_micros {
                found = Some(raw.seq);
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(found)
    }

    async fn purge(&self, chain: &str, anchor: &Checkpoint) -> Result<u64, AuditStoreError> {
        purge::purge(self, chain, anchor).await
    }

    async fn used_bytes(&self) -> Result<Option<u64>, AuditStoreError> {
        purge::used_bytes(self).await.map(Some)
    }
}
