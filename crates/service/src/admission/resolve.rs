//! Key resolution, the first step of admission: a presented secret resolved to what it names
//! (a tenant key, an admin key, or nothing), through the credential cache and then the store.
use std::sync::Arc;

use portcullis_core::{
    hash::KeyHash,
    key::{self, KeyKind},
    model::AdminKey,
};
use portcullis_store::StoreError;

use crate::{
    cache::{CachedAdmin, CachedKey, Entry},
    state::AppState,
};

/// Resolves a secret: format and checksum first (garbage never reaches the cache or the
/// store), then the cache, then the store.
pub async fn resolve(state: &AppState, secret: &str) -> Result<Entry, StoreError> {
    Ok(resolve_hashed(state, secret).await?.0)
}

/// [`resolve`], and the secret's hash (none for a malformed secret).
pub async fn resolve_hashed(
    state: &AppState,
    secret: &str,
) -> Result<(Entry, Option<KeyHash>), StoreError> {
    let Ok(parsed) = key::parse(secret) else {
        return Ok((Entry::Unknown, None));
    };
    let hash = state.pepper.hash(secret);
    let entry = match parsed.kind {
        KeyKind::Admin => lookup(state, hash, true).await?,
        KeyKind::Tenant(_) => lookup(state, hash, false).await?,
    };
    Ok((entry, Some(hash)))
}

/// The cache, then the store.
async fn lookup(state: &AppState, hash: KeyHash, admin: bool) -> Result<Entry, StoreError> {
    if let Some(entry) = state.cache.get(&hash) {
        state.metrics.cache_hit.inc();
        return Ok(entry);
    }
    state.metrics.cache_miss.inc();
    let epoch = state.cache.epoch();
    let entry = if admin {
        state
            .store
            .find_admin_key(&hash)
            .await?
            .map_or(Entry::Unknown, |a| {
                Entry::Admin(Arc::new(CachedAdmin::new(a)))
            })
    } else {
        state
            .store
            .find_key(&hash)
            .await?
            .map_or(Entry::Unknown, |m| Entry::Key(Arc::new(CachedKey::new(m))))
    };
    state.cache.insert(hash, entry.clone(), epoch);
    Ok(entry)
}

/// The admin key record behind `hash` as it is now (after a change, the cache has dropped it
/// and this reads the store): `None` once it is gone or revoked.
pub async fn admin_now(
    state: &AppState,
    hash: KeyHash,
) -> Result<Option<Arc<AdminKey>>, StoreError> {
    let now = state.clock.now();
    Ok(match lookup(state, hash, true).await? {
        Entry::Admin(a) if a.key.revoked_at.is_none_or(|r| r > now) => Some(a.key.clone()),
        _ => None,
    })
}
