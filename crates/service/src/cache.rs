//! The hot-path cache of credentials, keyed by the key hash. The store is read only on a miss.
//!
//! - Tenant keys and admin keys found in the store are kept for `ttl_seconds`.
//! - Well-formed keys that are not in the store are remembered as unknown for
//!   `negative_ttl_seconds`, so repeating an unknown key does not reach the store.
//! - Changes made through this server (roll, revoke, update, tenant status) invalidate the
//!   affected entries at once; changes made by any other writer of the store (the operator CLI,
//!   another node) within a poll interval, through the store's change feed ([`crate::changes`]).
use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use http::HeaderValue;
use moka::{Expiry, sync::Cache};
use portcullis_core::{OffsetDateTime, hash::KeyHash, model::AdminKey, tenant::TenantId};
use portcullis_store::KeyMatch;

use crate::config::CacheConfig;

/// When a cached credential was last reported as used (unix seconds), so that uses are reported
/// at most once per interval without touching the store on the request path.
#[derive(Debug)]
pub struct UseMarker(AtomicI64);

impl UseMarker {
    pub fn new(last_used: Option<OffsetDateTime>) -> Self {
        Self(AtomicI64::new(last_used.map_or(0, |t| t.unix_timestamp())))
    }

    /// `true` if this use should be reported (at most once per `every` seconds per entry).
    pub fn should_touch(&self, now: i64, every: i64) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        now - last >= every
            && self
                .0
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// A cached tenant key, with what the request path would otherwise rebuild on every request.
#[derive(Debug)]
pub struct CachedKey {
    pub found: KeyMatch,
    pub used: UseMarker,
    /// The key's id, shared: the rate limiters' entries name it without a copy.
    pub id: Arc<str>,
    /// The key's tenant, shared (the tenant limiter's entry).
    pub tenant: Arc<str>,
    /// The identity headers a gateway sends upstream for this key.
    pub identity: IdentityHeaders,
}

/// The values of the identity headers of a key's proxied requests (`X-Portcullis-Tenant`,
/// `-Key-Id`, `-Environment`, `-Scopes`), made once when the key enters the cache. Ids,
/// environments and scopes are visible ASCII by construction; a value that were not would be
/// left out rather than sent.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub tenant: Option<HeaderValue>,
    pub key_id: Option<HeaderValue>,
    pub environment: Option<HeaderValue>,
    /// The scopes, separated by single spaces.
    pub scopes: Option<HeaderValue>,
}

impl CachedKey {
    pub fn new(found: KeyMatch) -> Self {
        let used = UseMarker::new(found.key.last_used_at);
        let k = &found.key;
        let value = |s: &str| HeaderValue::from_str(s).ok();
        let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
        let identity = IdentityHeaders {
            tenant: value(k.tenant_id.as_str()),
            key_id: value(&k.id),
            environment: value(k.environment.as_str()),
            scopes: value(&scopes.join(" ")),
        };
        Self {
            id: Arc::from(k.id.as_str()),
            tenant: k.tenant_id.shared().clone(),
            identity,
            used,
            found,
        }
    }
}

/// A cached admin key.
#[derive(Debug)]
pub struct CachedAdmin {
    pub key: Arc<AdminKey>,
    pub used: UseMarker,
}

impl CachedAdmin {
    pub fn new(key: AdminKey) -> Self {
        let used = UseMarker::new(key.last_used_at);
        Self {
            key: Arc::new(key),
            used,
        }
    }
}

/// What a presented secret resolves to.
#[derive(Debug, Clone)]
pub enum Entry {
    Key(Arc<CachedKey>),
    Admin(Arc<CachedAdmin>),
    /// Malformed, or well-formed but not stored.
    Unknown,
}

impl Entry {
    /// Is this the record of tenant key `id` (of `tenant`)?
    fn is_key(&self, tenant: &TenantId, id: &str) -> bool {
        matches!(self, Entry::Key(k) if k.found.key.id == id && k.found.key.tenant_id == *tenant)
    }

    fn tenant(&self) -> Option<&TenantId> {
        match self {
            Entry::Key(k) => Some(&k.found.key.tenant_id),
            Entry::Admin(a) => a.key.tenant_id.as_ref(),
            Entry::Unknown => None,
        }
    }
}

struct Ttl {
    found: Duration,
    unknown: Duration,
}

impl Expiry<KeyHash, Entry> for Ttl {
    fn expire_after_create(&self, _: &KeyHash, v: &Entry, _: Instant) -> Option<Duration> {
        Some(match v {
            Entry::Unknown => self.unknown,
            _ => self.found,
        })
    }
}

/// The credential cache (disabled when its capacity is 0).
///
/// Every invalidation bumps an epoch. A miss notes the epoch before it reads the store and only
/// caches its result if no invalidation happened meanwhile, so a record read just before a
/// revocation can never be cached after it.
#[derive(Clone)]
pub struct KeyCache {
    inner: Option<Cache<KeyHash, Entry>>,
    epoch: Arc<AtomicU64>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("entries", &self.inner.as_ref().map(|c| c.entry_count()))
            .finish()
    }
}

impl KeyCache {
    pub fn new(cfg: &CacheConfig) -> Self {
        let inner = (cfg.capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(cfg.capacity)
                .expire_after(Ttl {
                    found: Duration::from_secs(cfg.ttl_seconds.max(1)),
                    unknown: Duration::from_secs(cfg.negative_ttl_seconds),
                })
                .support_invalidation_closures()
                .build()
        });
        Self {
            inner,
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The current invalidation epoch; pass it to [`KeyCache::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn get(&self, hash: &KeyHash) -> Option<Entry> {
        self.inner.as_ref()?.get(hash)
    }

    /// Caches a store result read at `epoch`, unless an invalidation happened since.
    pub fn insert(&self, hash: KeyHash, entry: Entry, epoch: u64) {
        if let Some(c) = &self.inner {
            c.insert(hash, entry);
            if self.epoch() != epoch {
                c.invalidate(&hash);
            }
        }
    }

    pub fn invalidate(&self, hashes: &[KeyHash]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = &self.inner {
            for h in hashes {
                c.invalidate(h);
            }
        }
    }

    /// Drops every entry of tenant key `id` (each of its secrets' hashes), without reading them
    /// from the store.
    pub fn invalidate_key(&self, tenant: &TenantId, id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = &self.inner {
            let (t, id) = (tenant.clone(), id.to_owned());
            // Cannot fail: invalidation closures are enabled in `new`.
            let _ = c.invalidate_entries_if(move |_, v| v.is_key(&t, &id));
        }
    }

    /// Drops the entry of admin key `id`.
    pub fn invalidate_admin(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = &self.inner {
            let id = id.to_owned();
            let _ =
                c.invalidate_entries_if(move |_, v| matches!(v, Entry::Admin(a) if a.key.id == id));
        }
    }

    /// Drops every entry (a reader of the change feed that missed entries).
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = &self.inner {
            c.invalidate_all();
        }
    }

    /// Drops every entry of a tenant (after its status changed).
    pub fn invalidate_tenant(&self, tenant: &TenantId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = &self.inner {
            let t = tenant.clone();
            // Cannot fail: invalidation closures are enabled in `new`.
            let _ = c.invalidate_entries_if(move |_, v| v.tenant() == Some(&t));
        }
    }
}
