//! Two server nodes on one NATS JetStream stream: a key change on one node reaches the other
//! node's readers, and a `Last-Event-ID`-style replay on the other node returns it. Needs the
//! NATS server at 127.0.0.1:4222 (or `PORTCULLIS_NATS_URL`); without it the test prints why
//! and passes, unless `PORTCULLIS_REQUIRE_SERVICES=1` (CI). Its stream is its own, deleted at
//! the end.
use std::time::Duration;

use portcullis_core::tenant::TenantId;
use portcullis_events::{
    EventType, Scope,
    backend::{Delivery, subscribe},
    nats::testing::{StreamGuard, fresh_config, services_required, url},
};
use portcullis_server::events::EventsBackendKind;
use portcullis_testkit::spawn_with;
use serde_json::json;

async fn nats_reachable() -> bool {
    let addr = url()
        .trim_start_matches("nats://")
        .split(',')
        .next()
        .unwrap_or_default()
        .to_owned();
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_events_through_jetstream() {
    if !nats_reachable().await {
        assert!(
            !services_required(),
            "NATS is required (PORTCULLIS_REQUIRE_SERVICES=1) but not reachable at {}",
            url()
        );
        eprintln!("skipping: NATS not reachable at {}", url());
        return;
    }
    let nats = fresh_config();
    let _guard = StreamGuard(nats.clone());
    let configure = |c: &mut portcullis_server::Config| {
        c.events.backend = EventsBackendKind::Nats;
        c.events.nats.url = nats.url.clone();
        c.events.nats.stream = nats.stream.clone();
        c.events.nats.subject_prefix = nats.subject_prefix.clone();
    };
    let a = spawn_with(configure).await;
    let b = spawn_with(configure).await;
    let acme = Scope::tenant(TenantId::parse("acme").expect("tenant"));
    let on_b = b.state.events.backend().expect("events on").clone();
    // A reader on node B, live from now.
    let mut live = subscribe(on_b.clone(), acme.clone(), Some(0), 64).await;
    a.tenant("acme").await;
    let (key_id, secret) = a
        .key("acme", json!({"name": "svc", "environment": "live"}))
        .await;
    let got = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .expect("the event reaches node B in time")
        .expect("open");
    let Delivery::Event(e) = got else {
        panic!("unexpected {got:?}");
    };
    assert_eq!(e.kind, EventType::KeyCreated);
    assert_eq!(e.data["key_id"], key_id.as_str());
    assert!(!e.to_json().contains(&secret));
    // Node B replays it to a reader that reconnects from before it.
    let replayed = on_b
        .read_after(e.id - 1, &acme, 10)
        .await
        .expect("replay on node B");
    assert_eq!(replayed.first().map(|r| r.id), Some(e.id));
    // Both nodes agree on the newest id.
    let on_a = a.state.events.backend().expect("events on");
    assert_eq!(
        on_a.last_id().await.expect("last id"),
        on_b.last_id().await.expect("last id")
    );
}
