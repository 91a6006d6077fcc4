//! Checkpoint rows, and the readers of the columns of stored rows.
use portcullis_audit::{AuditStoreError, Checkpoint, CheckpointKind, Digest};
use sqlx::{QueryBuilder, Row, Sqlite, sqlite::SqliteRow};

/// Checkpoints per multi-row INSERT (7 parameters each).
const CHECKPOINTS_PER_STATEMENT: usize = 500;

/// The columns [`read`] takes, in its order.
pub(super) const COLUMNS: &str = "chain, seq, kind, time_nanos, hash, signer, signature";

/// Appends to `q` the INSERT statements storing `checkpoints`, each ended by `; `.
pub(super) fn push_inserts<'a>(
    q: &mut QueryBuilder<'a, Sqlite>,
    checkpoints: &'a [Checkpoint],
) -> Result<(), AuditStoreError> {
    for chunk in checkpoints.chunks(CHECKPOINTS_PER_STATEMENT) {
        let values = chunk
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
        q.push(format_args!("INSERT INTO audit_checkpoints ({COLUMNS}) "));
        q.push_values(values, |mut b, (c, seq, nanos)| {
            b.push_bind(c.chain.as_str())
                .push_bind(seq)
                .push_bind(c.kind.as_str())
                .push_bind(nanos)
                .push_bind(&c.hash.0[..])
                .push_bind(c.signer.as_str())
                .push_bind(&c.signature[..]);
        });
        q.push("; ");
    }
    Ok(())
}

/// Reads a row of [`COLUMNS`].
pub(super) fn read(r: &SqliteRow) -> Result<Checkpoint, AuditStoreError> {
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

/// A sequence number as SQLite's INTEGER (numbers past `i64::MAX` are never stored).
pub(super) fn clamp(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A database failure (locked, I/O, a constraint): the text is for logs only.
pub(super) fn backend(e: sqlx::Error) -> AuditStoreError {
    AuditStoreError::Backend(e.to_string())
}

pub(super) fn corrupt(e: sqlx::Error) -> AuditStoreError {
    AuditStoreError::Corrupt(e.to_string())
}

pub(super) fn seq(r: &SqliteRow, i: usize) -> Result<u64, AuditStoreError> {
    let v: i64 = r.try_get(i).map_err(corrupt)?;
    u64::try_from(v).map_err(|_| AuditStoreError::Corrupt(format!("sequence number {v}")))
}

pub(super) fn digest(r: &SqliteRow, i: usize) -> Result<Digest, AuditStoreError> {
    let b: Vec<u8> = r.try_get(i).map_err(corrupt)?;
    Digest::from_slice(&b)
        .ok_or_else(|| AuditStoreError::Corrupt(format!("hash of {} bytes", b.len())))
}
