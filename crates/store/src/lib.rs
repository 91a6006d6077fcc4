//! Storage traits. Every backend (SQLite, PostgreSQL) implements [`Store`] and passes the same
//! conformance suite (feature `conformance`, macro [`conformance_tests!`]).
//!
//! Tenant isolation is enforced here, in the queries: every read or change of a key names its
//! tenant, and a key of another tenant is simply not found.
#![forbid(unsafe_code)]

use std::fmt::Debug;

use async_trait::async_trait;
use portcullis_core::{
    OffsetDateTime,
    error::ValidationError,
    hash::KeyHash,
    model::{AdminKey, ApiKey, Tenant},
    ratelimit::RateLimit,
    tenant::{Environment, TenantId, TenantStatus},
};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod feed;

pub use feed::{Change, ChangeFeed, ChangeTarget};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object (or its tenant) does not exist, or belongs to another tenant.
    #[error("not found")]
    NotFound,
    /// An object with this id already exists.
    #[error("already exists")]
    Conflict,
    /// The key is revoked and cannot be changed in this way.
    #[error("key is revoked")]
    Revoked,
    /// An edit was refused by validation; nothing was written.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The backend failed. The text is for logs only, never for clients.
    #[error("storage backend error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A page request: items after `after` (an id), at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

/// The largest page a backend returns, whatever was asked (the HTTP API allows less).
pub const MAX_STORE_PAGE_SIZE: u32 = 1000;

impl PageRequest {
    /// The page size a backend uses: `limit`, where 0 means
    /// [`portcullis_core::limits::DEFAULT_PAGE_SIZE`], capped at [`MAX_STORE_PAGE_SIZE`].
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => portcullis_core::limits::DEFAULT_PAGE_SIZE,
            n => n.min(MAX_STORE_PAGE_SIZE),
        }
    }
}

/// A page of items, in id (= creation) order, and the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of `items` fetched with one more than `limit` (to learn whether more follow):
    /// at most `limit` of them, and the cursor (`id` of the last) when more follow.
    pub fn cut(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> String) -> Self {
        let limit = limit as usize;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more { items.last().map(id) } else { None };
        Page { items, next_cursor }
    }
}

/// Filters of a key listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    pub environment: Option<Environment>,
    pub revoked: Option<bool>,
    pub external_id: Option<String>,
}

/// What a presented key's hash resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    pub key: ApiKey,
    pub tenant_status: TenantStatus,
    /// Set when the matched secret was rolled away; it works until then.
    pub secret_expires_at: Option<OffsetDateTime>,
    /// The limit of the key's tenant (across all its keys), read with the key so that the
    /// gateway needs no second read.
    pub tenant_rate_limit: Option<RateLimit>,
}

/// The result of a roll: the key as it is now, and every hash that resolved to it before (so
/// caches can drop them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolled {
    pub key: ApiKey,
    pub previous_hashes: Vec<KeyHash>,
}

/// An edit applied to a record inside the store's transaction.
pub type Edit<'a, T> = Box<dyn FnOnce(&mut T) -> Result<(), ValidationError> + Send + 'a>;

/// The storage of tenants, keys and admin keys.
///
/// Rules every backend follows (the conformance suite checks them):
/// - lists are in id order; `next_cursor` is the last id of a page when more items follow, and
///   `None` on the last page;
/// - `update_*` edits cannot change what identifies a record: a tenant keeps its `id`,
///   `key_prefix` and `created_at`; a key keeps its `id`, `tenant_id`, `environment`, `hint`,
///   `created_at`, `revoked_at` and `last_used_at` (those change only through `roll_key`,
///   `revoke_key` and `touch_keys`);
/// - an edit that returns an error writes nothing;
/// - every successful `update_tenant`, `update_key`, `roll_key`, first `revoke_key` and first
///   `revoke_admin_key` appends an entry to the [`ChangeFeed`] in the same transaction.
#[async_trait]
pub trait Store: ChangeFeed + Send + Sync + Debug {
    /// Is the store reachable?
    async fn ping(&self) -> Result<()>;

    /// Creates a tenant; [`StoreError::Conflict`] if the id is taken.
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>>;
    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<Tenant>>;
    /// Reads, edits and writes a tenant in one transaction.
    async fn update_tenant(&self, id: &TenantId, edit: Edit<'_, Tenant>) -> Result<Tenant>;

    /// Stores a new key and its secret's hash. [`StoreError::NotFound`] if the tenant does not exist.
    async fn create_key(&self, key: &ApiKey, hash: &KeyHash) -> Result<()>;
    async fn get_key(&self, tenant: &TenantId, id: &str) -> Result<Option<ApiKey>>;
    async fn list_keys(
        &self,
        tenant: &TenantId,
        filter: &KeyFilter,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>>;
    /// Reads, edits and writes a key in one transaction.
    async fn update_key(
        &self,
        tenant: &TenantId,
        id: &str,
        edit: Edit<'_, ApiKey>,
    ) -> Result<ApiKey>;
    /// Gives the key a new secret (`new_hash`, shown as `new_hint`). Secrets in use until now stop
    /// working at `old_secret_expires_at` (earlier expiries are kept). [`StoreError::Revoked`] for a
    /// revoked key.
    async fn roll_key(
        &self,
        tenant: &TenantId,
        id: &str,
        new_hash: &KeyHash,
        new_hint: &str,
        old_secret_expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Rolled>;
    /// Revokes a key (idempotent: the first revocation time is kept). The first revocation also
    /// sets `updated_at` to `now`.
    async fn revoke_key(&self, tenant: &TenantId, id: &str, now: OffsetDateTime) -> Result<ApiKey>;
    /// Every hash that resolves to the key (current and rolled secrets). [`StoreError::NotFound`]
    /// (or an empty list) for a key that does not exist in `tenant`.
    async fn key_hashes(&self, tenant: &TenantId, id: &str) -> Result<Vec<KeyHash>>;
    /// Resolves a presented key's hash.
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<KeyMatch>>;
    /// Keys of every tenant, not revoked, whose expiry is in `from..to`, ordered by expiry then
    /// id, after `after` (the expiry and id of the last key of the previous page), at most
    /// `limit` (0: the default page; capped at [`MAX_STORE_PAGE_SIZE`]). For the expiry notices
    /// (`key.expiring`, `key.expired`), never for a tenant's caller.
    async fn keys_expiring(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<&(OffsetDateTime, String)>,
        limit: u32,
    ) -> Result<Vec<ApiKey>>;
    /// Records last use of keys (batched by the caller): API keys and admin keys alike, by id.
    /// Unknown ids are ignored; `last_used_at` never moves backwards; `updated_at` is untouched.
    async fn touch_keys(&self, used: &[(String, OffsetDateTime)]) -> Result<()>;

    /// Stores a new admin key. [`StoreError::NotFound`] if it is bound to a missing tenant.
    async fn create_admin_key(&self, key: &AdminKey, hash: &KeyHash) -> Result<()>;
    async fn find_admin_key(&self, hash: &KeyHash) -> Result<Option<AdminKey>>;
    async fn list_admin_keys(&self) -> Result<Vec<AdminKey>>;
    /// Revokes an admin key (idempotent: the first revocation time is kept).
    async fn revoke_admin_key(&self, id: &str, now: OffsetDateTime) -> Result<AdminKey>;
    /// Admin keys stored, revoked ones included.
    async fn count_admin_keys(&self) -> Result<u64>;
}
