//! The chain of signing keys (`audit_signing_keys`): read in order, appended one link at a time.
use portcullis_audit::{AuditStoreError, KeyLink};
use sqlx::{Row, SqlitePool};

use super::checkpoints::{backend, clamp, corrupt, seq};

/// Every link, by number.
pub(super) async fn links(read: &SqlitePool) -> Result<Vec<KeyLink>, AuditStoreError> {
    let rows = sqlx::query(
        "SELECT seq, public_key, time_nanos, signature FROM audit_signing_keys ORDER BY seq",
    )
    .fetch_all(read)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|r| {
            let seq = seq(r, 0)?;
            let at = |what: &str| AuditStoreError::Corrupt(format!("signing key {seq}: {what}"));
            let key: Vec<u8> = r.try_get(1).map_err(corrupt)?;
            let nanos: i64 = r.try_get(2).map_err(corrupt)?;
            let signature: Vec<u8> = r.try_get(3).map_err(corrupt)?;
            Ok(KeyLink {
                seq,
                public_key: key.try_into().map_err(|_| at("public key length"))?,
                time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
                    .map_err(|_| at("time"))?,
                signature: signature.try_into().map_err(|_| at("signature length"))?,
            })
        })
        .collect()
}

/// Stores `link` if its number follows the last stored one (in one statement, so two processes
/// adding a link at once cannot both succeed).
pub(super) async fn add(write: &SqlitePool, link: &KeyLink) -> Result<bool, AuditStoreError> {
    let nanos = i64::try_from(link.time.unix_timestamp_nanos())
        .map_err(|_| AuditStoreError::Backend("signing key time out of range".into()))?;
    let done = sqlx::query(
        "INSERT INTO audit_signing_keys (seq, public_key, time_nanos, signature) \
         SELECT ?, ?, ?, ? WHERE ? = (SELECT coalesce(max(seq), 0) + 1 FROM audit_signing_keys)",
    )
    .bind(clamp(link.seq))
    .bind(&link.public_key[..])
    .bind(nanos)
    .bind(&link.signature[..])
    .bind(clamp(link.seq))
    .execute(write)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}
