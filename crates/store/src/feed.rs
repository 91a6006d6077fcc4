//! The change feed: every change to a record that a reader may hold in a cache (a key's edit,
//! roll or revocation, a tenant's edit, an admin key's revocation) is written, in the same
//! transaction, as one entry with an increasing id. A reader (the server's key cache, another
//! process on the same data directory, later another node) polls the newest id — one cheap
//! indexed read — and, when it moved, reads the entries after the last one it saw and drops
//! what they name.
//!
//! The feed keeps a bounded tail ([`FEED_RETAINED`] entries): a reader that fell further behind
//! sees a gap (its next entry's id is not the one it expected) and drops everything.
use async_trait::async_trait;
use portcullis_core::tenant::TenantId;

use crate::Result;

/// How many of the newest entries a backend keeps, at least.
pub const FEED_RETAINED: u64 = 10_000;

/// What a change touched. Exhaustive on purpose: every backend writes, and every reader
/// handles, each kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChangeTarget {
    /// A key (edited, rolled or revoked).
    Key { tenant: TenantId, id: String },
    /// A tenant (its status, limits or other fields), and so every key of it.
    Tenant(TenantId),
    /// An admin key (revoked).
    AdminKey { id: String },
}

/// One entry of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Increasing: a later change has a larger id (ids may skip).
    pub id: u64,
    pub target: ChangeTarget,
}

/// Where changes are read from.
#[async_trait]
pub trait ChangeFeed: Send + Sync + std::fmt::Debug {
    /// The id of the newest entry (0 when there is none).
    async fn latest_change(&self) -> Result<u64>;
    /// Entries with an id greater than `after`, oldest first, at most `limit` (0: the default
    /// page; capped at [`crate::MAX_STORE_PAGE_SIZE`]).
    async fn changes_after(&self, after: u64, limit: u32) -> Result<Vec<Change>>;
}
