//! Retention: a purge removes a chain's entries older than its window, in one whole range from
//! the chain's start, under a signed retention checkpoint that records where the kept chain
//! starts, so what is kept still verifies.
//!
//! - The range is verified before it is removed: a purge never signs over a broken chain (it
//!   refuses and names the broken point instead).
//! - The chain's last entry is always kept, so numbering continues after it.
//! - The caller records the purge itself in the audit log (action `audit.purge`).
use serde::Serialize;
use time::OffsetDateTime;

use crate::{
    checkpoint::{CheckpointKind, CheckpointSigner},
    keys::KeyChain,
    record::micros,
    store::{AuditStore, AuditStoreError},
    verify::Break,
    walk::verify_chain,
};

/// What one purge removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub chain: String,
    /// Entries removed.
    pub removed: u64,
    /// The last removed entry: the kept chain starts at `through_seq + 1`.
    pub through_seq: u64,
}

/// A purge did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PurgeError {
    #[error(transparent)]
    Store(#[from] AuditStoreError),
    /// The range to remove does not verify: nothing was removed.
    #[error("refusing to purge a broken chain: {0}")]
    Broken(Break),
}

/// Removes the entries of `chain` older than `cutoff`. `Ok(None)` when there is nothing to
/// remove.
pub async fn purge_chain(
    store: &dyn AuditStore,
    signer: &CheckpointSigner,
    chain: &str,
    cutoff: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Option<Purged>, PurgeError> {
    let Some(head) = store
        .heads()
        .await?
        .into_iter()
        .find_map(|(c, h)| (c == chain).then_some(h))
    else {
        return Ok(None);
    };
    // The first kept entry: the first one inside the window, but never past the head.
    let first_kept = store
        .first_seq_since(chain, micros(cutoff))
        .await?
        .unwrap_or(head.seq)
        .min(head.seq);
    let through = first_kept.saturating_sub(1);
    let anchor = store
        .checkpoints(chain)
        .await?
        .iter()
        .filter(|c| c.kind == CheckpointKind::Retention)
        .map(|c| c.seq)
        .max()
        .unwrap_or(0);
    if through <= anchor {
        return Ok(None);
    }
    // The stored chain of keys vouches for the keys before this one (a log without one: only
    // this key).
    let keys = match KeyChain::load(store).await? {
        Ok(keys) if !keys.is_empty() => keys,
        Ok(_) => KeyChain::single(signer.verifying_key()),
        Err(broken) => return Err(PurgeError::Broken(broken)),
    };
    if let Err(broken) = verify_chain(store, &keys, chain, None, Some(through)).await? {
        return Err(PurgeError::Broken(broken));
    }
    let last = store
        .entries(chain, through, Some(through), 1)
        .await?
        .pop()
        .ok_or_else(|| {
            AuditStoreError::Corrupt(format!("chain {chain}: entry {through} vanished"))
        })?;
    let checkpoint = signer.sign(CheckpointKind::Retention, chain, through, last.hash, now);
    let removed = store.purge(chain, &checkpoint).await?;
    Ok(Some(Purged {
        chain: chain.to_owned(),
        removed,
        through_seq: through,
    }))
}
