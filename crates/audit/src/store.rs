//! The audit storage trait. Backends: `portcullis-sqlite` (embedded, its own database file).
use std::fmt::Debug;

use async_trait::async_trait;

use crate::{
    chain::Head,
    checkpoint::Checkpoint,
    keys::KeyLink,
    record::{Columns, Decision, Entry, Kind},
};

/// An audit storage failure. The text is for logs and the operator, never for API clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditStoreError {
    /// The backend failed (I/O, locked, full disk…).
    #[error("audit storage error: {0}")]
    Backend(String),
    /// A stored row cannot be read as an entry (a broken hash length, an unknown kind…). The
    /// verifier reports it as a broken point.
    #[error("audit storage holds an unreadable row: {0}")]
    Corrupt(String),
}

/// Filters of an audit search. Times are Unix microseconds; `since` is inclusive, `until`
/// exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub since_micros: Option<i64>,
    pub until_micros: Option<i64>,
    pub key_id: Option<String>,
    pub action: Option<String>,
    pub kind: Option<Kind>,
    pub decision: Option<Decision>,
}

impl AuditFilter {
    /// Does an entry with these columns match? The rule every backend's search follows.
    pub fn matches(&self, c: &Columns) -> bool {
        self.since_micros.is_none_or(|s| c.time_micros >= s)
            && self.until_micros.is_none_or(|u| c.time_micros < u)
            && self
                .key_id
                .as_ref()
                .is_none_or(|k| c.key_id.as_ref() == Some(k))
            && self.action.as_ref().is_none_or(|a| &c.action == a)
            && self.kind.is_none_or(|k| c.kind == k)
            && self.decision.is_none_or(|d| c.decision == Some(d))
    }
}

/// Where audit entries and checkpoints are kept. Append-only for everything but [`purge`],
/// which removes a chain's oldest entries under a retention checkpoint in one transaction.
///
/// [`purge`]: AuditStore::purge
#[async_trait]
pub trait AuditStore: Send + Sync + Debug {
    /// The last entry of every chain, for the writer to continue from.
    async fn heads(&self) -> Result<Vec<(String, Head)>, AuditStoreError>;

    /// Appends entries and checkpoints in one transaction: all of them are kept, or none.
    async fn append(
        &self,
        entries: &[Entry],
        checkpoints: &[Checkpoint],
    ) -> Result<(), AuditStoreError>;

    /// The names of every chain that has entries or checkpoints, sorted.
    async fn chains(&self) -> Result<Vec<String>, AuditStoreError>;

    /// Entries of `chain` with `seq >= from_seq` (and `<= to_seq`), in sequence order, at most
    /// `limit`.
    async fn entries(
        &self,
        chain: &str,
        from_seq: u64,
        to_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Entry>, AuditStoreError>;

    /// Entries of `chain` matching `filter` with `seq > after_seq`, in sequence order, at most
    /// `limit`.
    async fn search(
        &self,
        chain: &str,
        filter: &AuditFilter,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Entry>, AuditStoreError>;

    /// Every checkpoint of `chain`, by sequence number.
    async fn checkpoints(&self, chain: &str) -> Result<Vec<Checkpoint>, AuditStoreError>;

    /// The sequence number of the first entry of `chain` at or after `time_micros`, if any.
    async fn first_seq_since(
        &self,
        chain: &str,
        time_micros: i64,
    ) -> Result<Option<u64>, AuditStoreError>;

    /// Removes the entries of `chain` with `seq <= anchor.seq` and stores the retention
    /// checkpoint `anchor` (which signs the head at `anchor.seq`), in one transaction. Returns
    /// how many entries were removed.
    async fn purge(&self, chain: &str, anchor: &Checkpoint) -> Result<u64, AuditStoreError>;

    /// Every link of the chain of signing keys, by number (empty for a log that keeps none).
    async fn signing_keys(&self) -> Result<Vec<KeyLink>, AuditStoreError> {
        Ok(Vec::new())
    }

    /// Stores `link` if it is the next link of the chain of signing keys (its number is one more
    /// than the last stored); `Ok(false)` when another link took that number first.
    async fn add_signing_key(&self, link: &KeyLink) -> Result<bool, AuditStoreError> {
        let _ = link;
        Err(AuditStoreError::Backend(
            "this audit store keeps no chain of signing keys".into(),
        ))
    }

    /// Bytes the stored entries and checkpoints take (pages in use, not pages freed by a
    /// purge and kept for reuse), for the log's disk budget. Cheap: meant to be asked every
    /// second or so. `None` when the backend cannot tell (no budget is then enforced).
    async fn used_bytes(&self) -> Result<Option<u64>, AuditStoreError> {
        Ok(None)
    }
}
