//! Anomaly events from the request path: a revoked key in use, a failure burst from one
//! address, a new client address of a key — each once per episode, published within a tick.
use std::time::Duration;

use portcullis_core::tenant::TenantId;
use portcullis_events::{Event, EventType, Scope};
use portcullis_testkit::{TestServer, spawn};
use reqwest::Method;
use serde_json::json;

async fn verify(server: &TestServer, key: &str, ip: &str) -> serde_json::Value {
    let (s, v) = server
        .json(
            Method::POST,
            "/v1/verify",
            &server.root_secret,
            Some(json!({"key": key, "ip": ip})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Waits (a few ticks at most) until `pred` holds for the events `scope` sees.
async fn wait_events(
    server: &TestServer,
    scope: Scope,
    pred: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let backend = server.state.events.backend().expect("events on").clone();
    for _ in 0..50 {
        let events = backend.read_after(0, &scope, 1_000).await.expect("read");
        if pred(&events) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the expected events did not come");
}

fn count(events: &[Event], kind: EventType) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

#[tokio::test]
async fn revoked_key_use_failure_bursts_and_new_addresses_raise_one_event_each() {
    let server = spawn().await;
    server.tenant("acme").await;
    let acme = Scope::tenant(TenantId::parse("acme").expect("tenant"));
    let (id, secret) = server
        .key("acme", json!({"name": "svc", "environment": "live"}))
        .await;
    // A baseline address, then (after the learning period) a new one.
    assert_eq!(
        verify(&server, &secret, "198.51.100.1").await["valid"],
        true
    );
    server.clock.advance(time::Duration::hours(2));
    assert_eq!(
        verify(&server, &secret, "198.51.100.1").await["valid"],
        true
    );
    for _ in 0..3 {
        assert_eq!(
            verify(&server, &secret, "203.0.113.50").await["valid"],
            true
        );
    }
    let events = wait_events(&server, acme.clone(), |e| {
        count(e, EventType::AnomalyNewIp) > 0
    })
    .await;
    let new_ip: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventType::AnomalyNewIp)
        .collect();
    assert_eq!(new_ip.len(), 1, "once, not once per request");
    assert_eq!(new_ip[0].data["key_id"], id.as_str());
    assert_eq!(new_ip[0].data["ip"], "203.0.113.50");

    // The key revoked, then used again and again: one event.
    let (s, _) = server
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{id}/revoke"),
            &server.root_secret,
            None,
        )
        .await;
    assert_eq!(s, 200);
    for _ in 0..5 {
        assert_eq!(
            verify(&server, &secret, "198.51.100.1").await["code"],
            "REVOKED"
        );
    }
    let events = wait_events(&server, acme.clone(), |e| {
        count(e, EventType::AnomalyRevokedKeyUsed) > 0
    })
    .await;
    assert_eq!(count(&events, EventType::AnomalyRevokedKeyUsed), 1);
    let used = events
        .iter()
        .find(|e| e.kind == EventType::AnomalyRevokedKeyUsed)
        .expect("event");
    assert_eq!(used.data["key_id"], id.as_str());
    assert_eq!(used.data["state"], "revoked");

    // Unknown keys from one address: one burst event for the deployment (no tenant is known).
    for i in 0..60 {
        let fake = format!("sk_live_unknownunknownunknownunknown{i:04}");
        verify(&server, &fake, "192.0.2.77").await;
    }
    let events = wait_events(&server, Scope::global(), |e| {
        count(e, EventType::AuthFailureBurst) > 0
    })
    .await;
    let bursts: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventType::AuthFailureBurst && e.data["ip"] == "192.0.2.77")
        .collect();
    assert_eq!(bursts.len(), 1, "one burst per episode: {bursts:?}");
    assert!(bursts[0].tenant.is_none());
    // No event carries a secret.
    for e in &events {
        assert!(!e.to_json().contains(&secret));
    }
}
