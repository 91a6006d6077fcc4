//! The conformance suite: the checks every [`EventBackend`] must pass (feature `conformance`).
//!
//! A backend runs it from an integration test with
//! [`events_conformance_tests!`](crate::events_conformance_tests), giving an async expression
//! that makes a fresh, empty, isolated backend (an `Arc<dyn EventBackend>`); the macro expands
//! to one `#[tokio::test(flavor = "multi_thread")]` per check in a module named by its first
//! argument. A backend that needs an outside service can return `None` from its expression's
//! `Option` form (`events_conformance_tests!(name, optional async { … })`) to skip, after
//! printing why.
//!
//! Each check is a `pub async fn(Arc<dyn EventBackend>)` that panics on the first broken rule.
use std::{collections::BTreeSet, sync::Arc, time::Duration};

use portcullis_core::tenant::TenantId;
use time::OffsetDateTime;

use crate::{
    backend::{Delivery, EventBackend, subscribe},
    model::{EventType, NewEvent, Scope, TypeSet},
};

/// Expands to one test per check, each with a fresh backend from `$make`.
#[macro_export]
macro_rules! events_conformance_tests {
    ($name:ident, optional $make:expr $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__events_conformance_checks!(
                $make;
                ids_increase_and_duplicates_are_dropped,
                read_after_keeps_tenants_and_types_apart,
                live_feed_carries_every_event_in_order,
                replay_then_live_has_no_gap_and_no_duplicate,
                slow_reader_is_told_to_reconnect,
                replay_goes_at_the_readers_pace,
                purge_removes_old_events_and_keeps_ids,
            );
        }
    };
    ($name:ident, $make:expr $(,)?) => {
        $crate::events_conformance_tests!($name, optional async { Some($make.await) });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __events_conformance_checks {
    ($make:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let made: Option<std::sync::Arc<dyn $crate::EventBackend>> = $make.await;
                if let Some(backend) = made {
                    $crate::conformance::$check(backend).await;
                }
            }
        )+
    };
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant id")
}

/// An event of `kind` for `tenant` with `n` in its data.
pub fn event(kind: EventType, tenant_id: Option<&str>, n: u64) -> NewEvent {
    NewEvent::new(
        kind,
        tenant_id.map(tenant),
        OffsetDateTime::now_utc(),
        serde_json::json!({ "n": n }),
    )
}

fn n_of(e: &crate::Event) -> u64 {
    e.data["n"].as_u64().expect("n in data")
}

pub async fn ids_increase_and_duplicates_are_dropped(b: Arc<dyn EventBackend>) {
    let before = b.last_id().await.expect("last id");
    let batch: Vec<NewEvent> = (0..10)
        .map(|n| event(EventType::KeyCreated, Some("acme"), n))
        .collect();
    let again = batch[3].clone();
    let stored = b.publish(batch).await.expect("publish");
    assert_eq!(stored.len(), 10);
    let mut last = before;
    for (i, e) in stored.iter().enumerate() {
        assert!(e.id > last, "ids increase in publish order");
        assert_eq!(n_of(e), i as u64);
        last = e.id;
    }
    assert_eq!(b.last_id().await.expect("last id"), last);
    // The same message id again: nothing new is stored, alone or in a batch.
    assert!(
        b.publish(vec![again.clone()])
            .await
            .expect("dup")
            .is_empty()
    );
    let mixed = b
        .publish(vec![again, event(EventType::KeyRevoked, Some("acme"), 99)])
        .await
        .expect("mixed");
    assert_eq!(mixed.len(), 1);
    assert_eq!(mixed[0].kind, EventType::KeyRevoked);
    let all = b
        .read_after(before, &Scope::global(), 100)
        .await
        .expect("read");
    assert_eq!(all.len(), 11);
    assert!(b.publish(Vec::new()).await.expect("empty").is_empty());
}

pub async fn read_after_keeps_tenants_and_types_apart(b: Arc<dyn EventBackend>) {
    let start = b.last_id().await.expect("last id");
    let mut batch = Vec::new();
    for n in 0..30 {
        let (kind, t) = match n % 3 {
            0 => (EventType::KeyCreated, Some("acme")),
            1 => (EventType::KeyRevoked, Some("other")),
            _ => (EventType::AuditDegraded, None),
        };
        batch.push(event(kind, t, n));
    }
    let stored = b.publish(batch).await.expect("publish");
    let acme = b
        .read_after(start, &Scope::tenant(tenant("acme")), 100)
        .await
        .expect("read acme");
    assert_eq!(acme.len(), 10);
    assert!(acme.iter().all(|e| e.tenant == Some(tenant("acme"))));
    let other = b
        .read_after(start, &Scope::tenant(tenant("other")), 100)
        .await
        .expect("read other");
    assert_eq!(other.len(), 10);
    assert!(other.iter().all(|e| e.kind == EventType::KeyRevoked));
    let all = b
        .read_after(start, &Scope::global(), 100)
        .await
        .expect("read all");
    assert_eq!(
        all, stored,
        "a global reader sees every event, as published"
    );
    let mut types = TypeSet::none();
    types.insert(EventType::AuditDegraded);
    let system = b
        .read_after(start, &Scope::global().with_types(types), 100)
        .await
        .expect("read typed");
    assert_eq!(system.len(), 10);
    assert!(system.iter().all(|e| e.tenant.is_none()));
    // After an id, and at most `limit`.
    let page = b
        .read_after(stored[9].id, &Scope::global(), 5)
        .await
        .expect("page");
    assert_eq!(page, stored[10..15].to_vec());
    let none = b
        .read_after(stored[29].id, &Scope::global(), 5)
        .await
        .expect("after last");
    assert!(none.is_empty());
}

pub async fn live_feed_carries_every_event_in_order(b: Arc<dyn EventBackend>) {
    let mut live = b.live();
    let stored = b
        .publish(
            (0..50)
                .map(|n| event(EventType::KeyUpdated, Some("acme"), n))
                .collect(),
        )
        .await
        .expect("publish");
    for expected in &stored {
        let got = tokio::time::timeout(Duration::from_secs(10), live.recv())
            .await
            .expect("live event in time")
            .expect("live feed open");
        assert_eq!(got.as_ref(), expected);
    }
}

pub async fn replay_then_live_has_no_gap_and_no_duplicate(b: Arc<dyn EventBackend>) {
    let start = b.last_id().await.expect("last id");
    let before: Vec<NewEvent> = (0..1200)
        .map(|n| event(EventType::KeyCreated, Some("acme"), n))
        .collect();
    b.publish(before).await.expect("publish before");
    let mut sub = subscribe(
        b.clone(),
        Scope::tenant(tenant("acme")),
        Some(start),
        100_000,
    )
    .await;
    // Published while the replay runs, in small batches, with other tenants' in between.
    let writer = {
        let b = b.clone();
        tokio::spawn(async move {
            for chunk in 0..30u64 {
                let batch = (0..10)
                    .flat_map(|i| {
                        let n = 1200 + chunk * 10 + i;
                        [
                            event(EventType::KeyCreated, Some("acme"), n),
                            event(EventType::KeyCreated, Some("other"), n),
                        ]
                    })
                    .collect();
                b.publish(batch).await.expect("publish during replay");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = BTreeSet::new();
    let mut last = start;
    while seen.len() < 1500 {
        let d = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("delivery in time")
            .expect("subscription open");
        let Delivery::Event(e) = d else {
            panic!("unexpected {d:?}");
        };
        assert!(e.id > last, "no duplicate, in order");
        last = e.id;
        assert_eq!(e.tenant, Some(tenant("acme")));
        assert!(seen.insert(n_of(&e)), "no duplicate");
    }
    writer.await.expect("writer");
    assert_eq!(seen, (0..1500).collect::<BTreeSet<u64>>(), "no gap");
}

pub async fn slow_reader_is_told_to_reconnect(b: Arc<dyn EventBackend>) {
    let start = b.last_id().await.expect("last id");
    let mut sub = subscribe(b.clone(), Scope::global(), Some(start), 8).await;
    // Let the subscription finish its (empty) replay and follow the live feed, which never
    // waits for a reader.
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.publish(
        (0..50)
            .map(|n| event(EventType::KeyCreated, Some("acme"), n))
            .collect(),
    )
    .await
    .expect("publish");
    // Let the subscription fill its buffer while nobody reads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("delivery in time")
        {
            Some(Delivery::Event(e)) => got.push(e.id),
            Some(Delivery::Overflow { last_id }) => {
                assert_eq!(got.len(), 8, "the buffer, then the notice");
                assert_eq!(
                    Some(&last_id),
                    got.last(),
                    "reconnect after the last one got"
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(sub.next().await.is_none(), "the subscription ends");
    // Reconnecting with the last id resumes where it stopped.
    let resumed = b
        .read_after(*got.last().expect("got some"), &Scope::global(), 100)
        .await
        .expect("read");
    assert_eq!(resumed.len(), 42);
}

pub async fn purge_removes_old_events_and_keeps_ids(b: Arc<dyn EventBackend>) {
    let old = OffsetDateTime::now_utc() - time::Duration::days(30);
    let mut first = event(EventType::KeyCreated, Some("acme"), 0);
    first.time = old;
    let stored = b
        .publish(vec![first, event(EventType::KeyCreated, Some("acme"), 1)])
        .await
        .expect("publish");
    let removed = b
        .purge(OffsetDateTime::now_utc() - time::Duration::days(7))
        .await
        .expect("purge");
    // A backend that keeps events by age on its own (JetStream's max_age) may remove nothing
    // here; one that purges must remove exactly the old one.
    let left = b
        .read_after(stored[0].id - 1, &Scope::global(), 10)
        .await
        .expect("read");
    if removed > 0 {
        assert_eq!(left, vec![stored[1].clone()]);
    }
    let next = b
        .publish(vec![event(EventType::KeyCreated, Some("acme"), 2)])
        .await
        .expect("publish after purge");
    assert!(next[0].id > stored[1].id, "ids are never reused");
}

/// A replay longer than the reader's buffer is not an overflow: it waits for the reader.
pub async fn replay_goes_at_the_readers_pace(b: Arc<dyn EventBackend>) {
    let start = b.last_id().await.expect("last id");
    b.publish(
        (0..100)
            .map(|n| event(EventType::KeyCreated, Some("acme"), n))
            .collect(),
    )
    .await
    .expect("publish");
    let mut sub = subscribe(b.clone(), Scope::global(), Some(start), 8).await;
    let mut got = Vec::new();
    while got.len() < 100 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        match tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("delivery in time")
        {
            Some(Delivery::Event(e)) => got.push(n_of(&e)),
            other => panic!("unexpected {other:?} after {} events", got.len()),
        }
    }
    assert_eq!(got, (0..100).collect::<Vec<u64>>());
}
