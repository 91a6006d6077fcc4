//! The conformance suite: the checks every [`AuditStore`] backend must pass (feature
//! `conformance`).
//!
//! A backend runs it from an integration test with
//! [`conformance_tests!`](crate::conformance_tests), giving an async expression that makes a
//! fresh, empty, isolated store:
//!
//! ```ignore
//! portcullis_audit::conformance_tests!(async {
//!     std::sync::Arc::new(MyAuditStore::memory().await.expect("store"))
//!         as std::sync::Arc<dyn AuditStore>
//! });
//! ```
//!
//! The macro expands to one `#[tokio::test]` per check (so the calling crate needs `tokio` with
//! the `macros` and `rt-multi-thread` features as a dev-dependency), inside a module named
//! `conformance` or the name given first: `conformance_tests!(on_file, async { … })`.
//!
//! Each check is a `pub async fn(Arc<dyn AuditStore>)` that panics on the first broken rule.
use time::{Duration, OffsetDateTime, macros::datetime};

use crate::{
    chain::{Chainer, Head},
    checkpoint::{Checkpoint, CheckpointKind, CheckpointSigner},
    record::{Decision, Entry, Kind, Record, SYSTEM_CHAIN},
    store::{AuditFilter, AuditStore},
};

mod checks;

pub use checks::*;

/// Expands to one test per conformance check, each with a fresh store from `$make` (an async
/// expression evaluating to `Arc<dyn AuditStore>`, evaluated once per test).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr $(,)?) => {
        $crate::conformance_tests!(conformance, $make);
    };
    ($name:ident, $make:expr $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::__audit_conformance_checks!(
                $make;
                empty_store_is_empty,
                append_round_trips_and_moves_heads,
                append_is_atomic,
                entries_pages_and_bounds,
                search_filters,
                search_pages_after_seq,
                checkpoints_by_seq,
                first_seq_since,
                purge_removes_only_the_anchored_range,
                chains_sorted,
                signing_keys_append_in_order,
            );
        }
    };
}

/// Implementation detail of [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __audit_conformance_checks {
    ($make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store: ::std::sync::Arc<dyn $crate::AuditStore> = $make.await;
                $crate::conformance::$check(store).await;
            }
        )*
    };
}

/// The time every check starts at (with nanoseconds, to see that they are kept).
pub fn t0() -> OffsetDateTime {
    datetime!(2026-03-01 12:00:00.123456789 UTC)
}

/// `t0() + secs` seconds.
pub fn at(secs: i64) -> OffsetDateTime {
    t0() + Duration::seconds(secs)
}

/// The signer of every check's checkpoints.
pub fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed(&[42; 32])
}

/// A request record of `tenant` (`None`: the system chain) at `t0() + i` seconds, with key,
/// action, kind and decision varying with `i` so that every search filter has matches and
/// misses: key `key_a`/`key_b`/none by `i % 3`, kind auth and action `auth.failure` when
/// `i % 4 == 3`, decision allow/deny/none by `i % 5`.
pub fn record(tenant: Option<&str>, i: u64) -> Record {
    let secs = i64::try_from(i).expect("small i");
    let (kind, action) = if i % 4 == 3 {
        (Kind::Auth, "auth.failure")
    } else {
        (Kind::Request, "request")
    };
    let mut r = Record::new(at(secs), kind, action)
        .with("method", "GET")
        .with("route", "/v1/invoices/{id}")
        .with("status", 200)
        .with("note", "ünïcode \"quoted\" \\ back\nslash")
        .with("i", i);
    r.tenant = tenant.map(str::to_owned);
    r.key_id = match i % 3 {
        0 => Some("key_a".to_owned()),
        1 => Some("key_b".to_owned()),
        _ => None,
    };
    r.decision = match i % 5 {
        0 | 1 => Some(Decision::Allow),
        2 | 3 => Some(Decision::Deny),
        _ => None,
    };
    r.request_id = Some(format!("req_{i}"));
    r
}

/// Seals `n` records of `tenant` (numbered from the chainer's head) with [`record`]`(…, i)`
/// for `i` in `first..first + n`.
pub fn seal(chainer: &mut Chainer, tenant: Option<&str>, first: u64, n: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|i| chainer.seal(&record(tenant, i)))
        .collect()
}

/// A checkpoint of `kind` signing `entry`.
pub fn checkpoint(kind: CheckpointKind, entry: &Entry) -> Checkpoint {
    signer().sign(kind, &entry.chain, entry.seq, entry.hash, at(3_600))
}

/// Stores `n` fresh entries of `tenant` (no checkpoints) and returns them.
pub async fn stored(
    store: &dyn AuditStore,
    chainer: &mut Chainer,
    tenant: Option<&str>,
    n: u64,
) -> Vec<Entry> {
    let first = chainer.head(tenant.unwrap_or(SYSTEM_CHAIN)).seq;
    let entries = seal(chainer, tenant, first, n);
    store.append(&entries, &[]).await.expect("append");
    entries
}

/// Every entry of `chain`, read in pages of 7.
pub async fn all_entries(store: &dyn AuditStore, chain: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    loop {
        let from = out.last().map_or(0, |e| e.seq + 1);
        let page = store.entries(chain, from, None, 7).await.expect("entries");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// The heads, sorted by chain.
pub async fn sorted_heads(store: &dyn AuditStore) -> Vec<(String, Head)> {
    let mut heads = store.heads().await.expect("heads");
    heads.sort_by(|a, b| a.0.cmp(&b.0));
    heads
}

/// Does `e` match `f`? ([`AuditFilter::matches`] on its columns.)
pub fn matches(e: &Entry, f: &AuditFilter) -> bool {
    f.matches(&e.columns().expect("a stored body reads back"))
}
