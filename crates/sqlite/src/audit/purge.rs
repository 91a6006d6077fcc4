//! Retention purge in blocks: whole blocks up to the anchor are deleted, the block holding the
//! anchor's entry (when the chain goes on after it inside that block) is rewritten without the
//! purged entries, and the retention checkpoint is stored — all in one transaction.
//!
//! The pages a purge frees stay in the file, on SQLite's free list, and later appends reuse them:
//! [`used_bytes`] (what the log's disk budget measures) counts the pages in use only, so a purge
//! lowers it at once while the file keeps its size.
use portcullis_audit::{AuditStoreError, Checkpoint, CheckpointKind, record::micros};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{
    SqliteAuditStore, checkpoints,
    checkpoints::{backend, clamp, corrupt, seq},
    codec::{self, Entries},
};

/// Bytes of the database's pages in use: `(page_count - freelist_count) * page_size`, read from
/// the database header (no table is scanned), as of the last commit.
pub(super) async fn used_bytes(store: &SqliteAuditStore) -> Result<u64, AuditStoreError> {
    let r = sqlx::query(
        "SELECT (SELECT page_count FROM pragma_page_count()), \
         (SELECT freelist_count FROM pragma_freelist_count()), \
         (SELECT page_size FROM pragma_page_size())",
    )
    .fetch_one(&store.read)
    .await
    .map_err(backend)?;
    let n = |i| r.try_get::<i64, _>(i).map_err(corrupt);
    let (pages, free, size) = (n(0)?, n(1)?, n(2)?);
    Ok(u64::try_from(pages.saturating_sub(free).saturating_mul(size)).unwrap_or(0))
}

pub(super) async fn purge(
    store: &SqliteAuditStore,
    chain: &str,
    anchor: &Checkpoint,
) -> Result<u64, AuditStoreError> {
    if anchor.chain != chain || anchor.kind != CheckpointKind::Retention {
        return Err(AuditStoreError::Backend(format!(
            "purge of chain {chain} needs a retention checkpoint of that chain"
        )));
    }
    let through = anchor.seq;
    let mut tx = store.begin().await?;
    let holder = sqlx::query(
        "SELECT first_seq, last_seq, data FROM audit_blocks \
         WHERE chain = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1",
    )
    .bind(chain)
    .bind(clamp(through))
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    let mut removed = 0;
    if let Some(r) = holder.filter(|r| seq(r, 1).is_ok_and(|last| last >= through)) {
        let first = seq(&r, 0)?;
        let data = codec::unpack(r.try_get(2).map_err(corrupt)?)?;
        // The anchor must sign the stored entry it names, or what is kept would not verify.
        let mut kept = codec::start(0, 0);
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        let mut kept_first = None;
        for raw in Entries::new(chain, first, &data) {
            let raw = raw?;
            if raw.seq == through && raw.hash != anchor.hash {
                return Err(AuditStoreError::Backend(format!(
                    "retention checkpoint of chain {chain} at {through} names another hash \
                     than the stored entry"
                )));
            }
            if raw.seq <= through {
                removed += 1;
                continue;
            }
            let t = micros(codec::record(chain, &raw)?.time);
            min_time = min_time.min(t);
            max_time = max_time.max(t);
            kept_first.get_or_insert(raw.seq);
            codec::push(&mut kept, &raw)?;
        }
        if let Some(kept_first) = kept_first {
            sqlx::query(
                "UPDATE audit_blocks SET first_seq = ?, min_time_micros = ?, \
                 max_time_micros = ?, data = ? WHERE chain = ? AND first_seq = ?",
            )
            .bind(clamp(kept_first))
            .bind(min_time)
            .bind(max_time)
            .bind(codec::pack(&kept)?)
            .bind(chain)
            .bind(clamp(first))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        } else {
            sqlx::query("DELETE FROM audit_blocks WHERE chain = ? AND first_seq = ?")
                .bind(chain)
                .bind(clamp(first))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
    }
    // Every block ending at or before the anchor, counted by its sequence range.
    let gone = sqlx::query(
        "DELETE FROM audit_blocks WHERE chain = ? AND first_seq <= ? AND last_seq <= ? \
         RETURNING first_seq, last_seq",
    )
    .bind(chain)
    .bind(clamp(through))
    .bind(clamp(through))
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    for r in &gone {
        removed += (seq(r, 1)? + 1).saturating_sub(seq(r, 0)?);
    }
    let mut q = QueryBuilder::<Sqlite>::new("");
    checkpoints::push_inserts(&mut q, std::slice::from_ref(anchor))?;
    q.build().execute(&mut *tx).await.map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(removed)
}
