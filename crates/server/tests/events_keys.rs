//! Key events: changes publish `key.*` events after they commit, and the expiry scan raises
//! `key.expiring` / `key.expired` once per key and expiry.
use portcullis_core::{clock::Clock, tenant::TenantId};
use portcullis_events::{Event, EventType, Scope};
use portcullis_server::events::expiry;
use portcullis_testkit::spawn;
use reqwest::Method;
use serde_json::json;
use time::{Duration, format_description::well_known::Rfc3339};

async fn events_of(server: &portcullis_testkit::TestServer, tenant: &str) -> Vec<Event> {
    let backend = server.state.events.backend().expect("events enabled");
    backend
        .read_after(
            0,
            &Scope::tenant(TenantId::parse(tenant).expect("tenant")),
            1_000,
        )
        .await
        .expect("read events")
}

fn kinds(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn key_changes_publish_events_without_secrets() {
    let server = spawn().await;
    server.tenant("acme").await;
    server.tenant("beta").await;
    let (id, secret) = server
        .key("acme", json!({"name": "billing", "environment": "live"}))
        .await;
    let base = format!("/v1/tenants/acme/keys/{id}");
    let (s, _) = server
        .json(
            Method::PATCH,
            &base,
            &server.root_secret,
            Some(json!({"name": "billing v2"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, rolled) = server
        .json(
            Method::POST,
            &format!("{base}/roll"),
            &server.root_secret,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{rolled}");
    for _ in 0..2 {
        let (s, _) = server
            .json(
                Method::POST,
                &format!("{base}/revoke"),
                &server.root_secret,
                None,
            )
            .await;
        assert_eq!(s, 200);
    }
    let events = events_of(&server, "acme").await;
    assert_eq!(
        kinds(&events),
        vec![
            EventType::KeyCreated,
            EventType::KeyUpdated,
            EventType::KeyRolled,
            EventType::KeyRevoked
        ],
        "one event per change; a second revocation raises none"
    );
    assert!(events.iter().all(|e| e.data["key_id"] == id.as_str()));
    assert_eq!(events[1].data["name"], "billing v2");
    assert!(events[2].data["previous_secret_expires_at"].is_string());
    assert_eq!(events[0].data["actor"], events[3].data["actor"]);
    let new_secret = rolled["secret"].as_str().expect("new secret");
    for e in &events {
        let text = e.to_json();
        assert!(
            !text.contains(&secret) && !text.contains(new_secret),
            "{text}"
        );
    }
    assert!(events_of(&server, "beta").await.is_empty());
}

#[tokio::test]
async fn expiry_notices_once_per_key_and_expiry() {
    let server = spawn().await;
    server.tenant("acme").await;
    let now = server.clock.now();
    let at = |d: Duration| (now + d).format(&Rfc3339).expect("format");
    let (soon, _) = server
        .key(
            "acme",
            json!({"name": "soon", "environment": "live", "expires_at": at(Duration::days(3))}),
        )
        .await;
    let (later, _) = server
        .key(
            "acme",
            json!({"name": "later", "environment": "live", "expires_at": at(Duration::days(30))}),
        )
        .await;
    let (revoked, _) = server
        .key(
            "acme",
            json!({"name": "gone", "environment": "live", "expires_at": at(Duration::days(2))}),
        )
        .await;
    server
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{revoked}/revoke"),
            &server.root_secret,
            None,
        )
        .await;
    let expiring = |events: &[Event], kind| {
        events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.data["key_id"].as_str().expect("key id").to_owned())
            .collect::<Vec<_>>()
    };
    // The first scan after start covers the notice window (7 days by default).
    expiry::scan(
        server.state.store.as_ref(),
        &server.state.events,
        now - Duration::days(7),
        now,
    )
    .await;
    let events = events_of(&server, "acme").await;
    assert_eq!(
        expiring(&events, EventType::KeyExpiring),
        vec![soon.clone()]
    );
    // Scanning the same span again: no second notice.
    expiry::scan(
        server.state.store.as_ref(),
        &server.state.events,
        now - Duration::days(7),
        now,
    )
    .await;
    let events = events_of(&server, "acme").await;
    assert_eq!(expiring(&events, EventType::KeyExpiring).len(), 1);
    // 23 days on, `later` enters its window; 4 days on, `soon` has expired.
    let t1 = now + Duration::days(24);
    expiry::scan(server.state.store.as_ref(), &server.state.events, now, t1).await;
    let events = events_of(&server, "acme").await;
    assert_eq!(
        expiring(&events, EventType::KeyExpiring),
        vec![soon.clone(), later.clone()]
    );
    assert_eq!(expiring(&events, EventType::KeyExpired), vec![soon.clone()]);
    let expired = events
        .iter()
        .find(|e| e.kind == EventType::KeyExpired)
        .expect("expired");
    assert_eq!(expired.data["name"], "soon");
    assert!(expired.data["expires_at"].is_string());
    // The revoked key never gets a notice.
    assert!(events.iter().all(|e| e.kind == EventType::KeyRevoked
        || e.kind == EventType::KeyCreated
        || e.data["key_id"] != revoked.as_str()));
}
