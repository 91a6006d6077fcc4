//! The conformance suite: the checks every [`Store`] backend must pass (feature `conformance`).
//!
//! A backend runs it from an integration test with [`conformance_tests!`](crate::conformance_tests),
//! giving an async expression that makes a fresh, empty, isolated store:
//!
//! ```ignore
//! portcullis_store::conformance_tests!(async {
//!     std::sync::Arc::new(MyStore::memory().await.expect("store")) as std::sync::Arc<dyn Store>
//! });
//! ```
//!
//! The macro expands to one `#[tokio::test]` per check (so the calling crate needs `tokio` with
//! the `macros` and `rt-multi-thread` features as a dev-dependency), inside a module named
//! `conformance` or the name given first: `conformance_tests!(file_backed, async { … })`.
//!
//! Each check is a `pub async fn(Arc<dyn Store>)` that panics on the first broken rule.
use std::sync::{Arc, OnceLock};

use portcullis_core::{
    OffsetDateTime,
    hash::{KeyHash, Pepper},
    ids,
    model::{AdminKey, ApiKey, Tenant},
    ratelimit::RateLimit,
    request::{CreateAdminKey, CreateKey, CreateTenant, KeyPolicy},
    scope::Scope,
    tenant::{Environment, TenantId},
};
use time::{Duration, macros::datetime};

use crate::{Store, StoreError};

mod admin;
mod changes;
mod feed;
mod keys;
mod ratelimits;
mod tenants;

pub use admin::*;
pub use changes::*;
pub use feed::*;
pub use keys::*;
pub use ratelimits::*;
pub use tenants::*;

/// Expands to one test per conformance check, each with a fresh store from `$make` (an async
/// expression evaluating to `Arc<dyn Store>`, evaluated once per test).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr $(,)?) => {
        $crate::conformance_tests!(conformance, $make);
    };
    ($name:ident, $make:expr $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::__conformance_checks!(
                $make;
                ping,
                tenant_round_trip,
                tenant_duplicate_conflicts,
                tenant_list_pages,
                tenant_update_edits_in_transaction,
                tenant_update_error_writes_nothing,
                tenant_update_keeps_identity,
                tenant_missing_not_found,
                tenant_ceilings_round_trip,
                key_create_needs_tenant,
                key_round_trip,
                key_duplicate_conflicts,
                key_tenant_isolation,
                find_key_resolves_hash,
                find_key_reports_tenant_status,
                list_keys_filters,
                list_keys_pages,
                update_key_round_trip,
                update_key_error_writes_nothing,
                update_key_keeps_identity,
                roll_key_new_and_old_secrets,
                roll_key_keeps_earliest_expiry,
                roll_key_revoked_or_missing,
                revoke_key_idempotent,
                touch_keys_records_last_use,
                keys_expiring_in_window,
                admin_key_lifecycle,
                admin_key_round_trip,
                admin_key_needs_tenant,
                concurrent_updates_all_land,
                key_rate_limit_round_trip,
                tenant_rate_limit_round_trip,
                find_key_reports_tenant_rate_limit,
                change_feed_records_changes,
            );
        }
    };
}

/// Implementation detail of [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks {
    ($make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store: ::std::sync::Arc<dyn $crate::Store> = $make.await;
                $crate::conformance::$check(store).await;
            }
        )*
    };
}

/// The time every check starts at (whole seconds, UTC).
pub fn t0() -> OffsetDateTime {
    datetime!(2026-03-01 12:00:00 UTC)
}

/// `t0() + secs` seconds.
pub fn at(secs: i64) -> OffsetDateTime {
    t0() + Duration::seconds(secs)
}

fn pepper() -> &'static Pepper {
    static PEPPER: OnceLock<Pepper> = OnceLock::new();
    PEPPER.get_or_init(|| Pepper::generate().0)
}

/// A fresh, random key hash.
pub fn new_hash() -> KeyHash {
    pepper().hash(&ids::new_id("secret"))
}

/// A scope from its text.
pub fn scope(s: &str) -> Scope {
    Scope::parse(s).expect("valid scope")
}

/// A tenant id from its text.
pub fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("valid tenant id")
}

/// A valid tenant `id` (not stored), created at [`t0`].
pub fn tenant(id: &str) -> Tenant {
    CreateTenant {
        id: id.to_owned(),
        name: format!("Tenant {id}"),
        key_prefix: Some("acme".to_owned()),
        max_key_lifetime_seconds: None,
        rate_limit: None,
        allowed_scopes: None,
        max_key_rate_limit: None,
    }
    .validate(t0())
    .expect("valid tenant")
}

/// Stores and returns a tenant `id`.
pub async fn stored_tenant(store: &dyn Store, id: &str) -> Tenant {
    let t = tenant(id);
    store.create_tenant(&t).await.expect("create tenant");
    t
}

/// A valid key of `tenant` (not stored) and the hash of its secret.
pub fn key(tenant: &Tenant, name: &str, environment: Environment) -> (ApiKey, KeyHash) {
    let new = CreateKey {
        name: name.to_owned(),
        environment,
        scopes: vec!["invoices:read".to_owned()],
        expires_at: None,
        ip_allowlist: vec![],
        metadata: None,
        external_id: None,
        rate_limit: None,
    }
    .create(tenant, &KeyPolicy::default(), t0())
    .expect("valid key");
    use portcullis_core::ExposeSecret;
    let hash = pepper().hash(new.secret.expose_secret());
    (new.key, hash)
}

/// Stores and returns a key of `tenant` and its hash.
pub async fn stored_key(
    store: &dyn Store,
    tenant: &Tenant,
    name: &str,
    environment: Environment,
) -> (ApiKey, KeyHash) {
    let (k, h) = key(tenant, name, environment);
    store.create_key(&k, &h).await.expect("create key");
    (k, h)
}

/// A valid admin key (not stored), bound to `tenant` if given, and its hash.
pub fn admin_key(name: &str, tenant: Option<&str>) -> (AdminKey, KeyHash) {
    let new = CreateAdminKey {
        name: name.to_owned(),
        tenant_id: tenant.map(str::to_owned),
        scopes: vec![],
    }
    .create(t0())
    .expect("valid admin key");
    use portcullis_core::ExposeSecret;
    let hash = pepper().hash(new.secret.expose_secret());
    (new.key, hash)
}

/// A rate limit (not validated: the store keeps what it is given).
pub fn limit(requests: u32, per_seconds: u32, burst: u32) -> RateLimit {
    RateLimit {
        requests,
        per_seconds,
        burst,
    }
}

/// Hashes in a canonical order, to compare sets.
pub fn sorted(mut hashes: Vec<KeyHash>) -> Vec<KeyHash> {
    hashes.sort_by_key(|h| h.0);
    hashes
}

/// Panics unless `r` is `Err(StoreError::NotFound)`.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "{what}: expected NotFound, got {r:?}"
    );
}

/// Panics unless `r` is `Err(StoreError::Conflict)`.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::Conflict)),
        "{what}: expected Conflict, got {r:?}"
    );
}

/// Is the store reachable?
pub async fn ping(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}
