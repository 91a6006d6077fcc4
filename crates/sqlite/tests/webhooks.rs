//! The embedded webhook store: tenants kept apart, the endpoint limit, secrets and their roll,
//! the fan-out (idempotent, cursor in the same transaction, only wanted events), due selection
//! with claims and leases, dead letters and redelivery.
use portcullis_core::{ExposeSecret, SecretString, ids, tenant::TenantId};
use portcullis_events::{
    EventBackend, EventType, TypeSet,
    conformance::event,
    webhook::{
        AttemptResult, DeliveryStatus, Endpoint, EndpointChange, Next, WebhookError, WebhookStore,
    },
};
use portcullis_sqlite::{SqliteEventStore, SqliteWebhookStore};
use time::{Duration, OffsetDateTime};

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn endpoint(t: &str, types: &str) -> Endpoint {
    Endpoint {
        id: ids::new_id("whk"),
        tenant: tenant(t),
        url: format!("https://{t}.example.com/hook"),
        description: None,
        types: TypeSet::parse_list(types).unwrap(),
        enabled: true,
        created_at: t0(),
        updated_at: t0(),
        previous_secret_expires_at: None,
    }
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

async fn stores() -> (SqliteEventStore, SqliteWebhookStore) {
    let events = SqliteEventStore::open_in_memory().await.expect("events");
    let hooks = events.webhooks();
    (events, hooks)
}

#[tokio::test]
async fn endpoints_stay_within_their_tenant_and_limit() {
    let (_events, s) = stores().await;
    let a = endpoint("acme", "key.created");
    let b = endpoint("other", "key.created");
    s.create_endpoint(&a, &secret("whsec_a"), 2).await.unwrap();
    s.create_endpoint(&b, &secret("whsec_b"), 2).await.unwrap();
    s.create_endpoint(&endpoint("acme", "key.revoked"), &secret("x"), 2)
        .await
        .unwrap();
    assert!(matches!(
        s.create_endpoint(&endpoint("acme", "key.revoked"), &secret("x"), 2)
            .await,
        Err(WebhookError::TooManyEndpoints)
    ));
    assert_eq!(
        s.get_endpoint(&tenant("acme"), &a.id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(s.get_endpoint(&tenant("acme"), &b.id).await.unwrap(), None);
    let listed = s.list_endpoints(&tenant("acme"), None, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|e| e.tenant == tenant("acme")));
    let page = s
        .list_endpoints(&tenant("acme"), Some(&a.id), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    // Another tenant's id is not found for every change.
    let other = tenant("other");
    let change = EndpointChange {
        enabled: Some(false),
        ..Default::default()
    };
    assert!(matches!(
        s.update_endpoint(&other, &a.id, &change, t0()).await,
        Err(WebhookError::NotFound)
    ));
    assert!(matches!(
        s.roll_secret(&other, &a.id, &secret("whsec_evil"), t0(), t0())
            .await,
        Err(WebhookError::NotFound)
    ));
    assert!(matches!(
        s.delete_endpoint(&other, &a.id).await,
        Err(WebhookError::NotFound)
    ));
    assert!(matches!(
        s.list_deliveries(&other, &a.id, None, None, 10).await,
        Err(WebhookError::NotFound)
    ));
    let (before, after) = s
        .update_endpoint(&tenant("acme"), &a.id, &change, t0() + Duration::seconds(5))
        .await
        .unwrap();
    assert!(before.enabled && !after.enabled);
    assert_eq!(after.updated_at, t0() + Duration::seconds(5));
    let gone = s.delete_endpoint(&tenant("acme"), &a.id).await.unwrap();
    assert_eq!(gone.id, a.id);
    assert_eq!(s.get_endpoint(&tenant("acme"), &a.id).await.unwrap(), None);
}

#[tokio::test]
async fn fan_out_is_idempotent_and_moves_the_cursor() {
    let (events, s) = stores().await;
    let acme = endpoint("acme", "key.created,key.revoked");
    let only_rolled = endpoint("acme", "key.rolled");
    let other = endpoint("other", "key.created");
    for e in [&acme, &only_rolled, &other] {
        s.create_endpoint(e, &secret("whsec_s"), 20).await.unwrap();
    }
    let mut disabled = endpoint("acme", "key.created");
    disabled.enabled = false;
    s.create_endpoint(&disabled, &secret("whsec_s"), 20)
        .await
        .unwrap();
    assert_eq!(s.cursor().await.unwrap(), 0);
    let mut published = events
        .publish(vec![
            event(EventType::KeyCreated, Some("acme"), 1),
            event(EventType::KeyUpdated, Some("acme"), 2),
            event(EventType::KeyCreated, Some("other"), 3),
            event(EventType::AuditDegraded, None, 4),
        ])
        .await
        .unwrap();
    // Events raised before an endpoint existed are not owed to it.
    for e in &mut published {
        e.time = t0() + Duration::seconds(1);
    }
    let through = published.last().unwrap().id;
    let n = s.fan_out(&published, through, t0()).await.unwrap();
    assert_eq!(n, 2, "acme's key.created to acme, other's to other");
    assert_eq!(s.cursor().await.unwrap(), through);
    // Again (a crash between the commit and the next read): nothing new, cursor kept.
    assert_eq!(s.fan_out(&published, through, t0()).await.unwrap(), 0);
    assert_eq!(s.fan_out(&[], through - 1, t0()).await.unwrap(), 0);
    assert_eq!(s.cursor().await.unwrap(), through, "never moves back");
    let d = s
        .list_deliveries(&tenant("acme"), &acme.id, None, None, 10)
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].event_id, published[0].id);
    assert_eq!(d[0].event_type, "key.created");
    assert_eq!(d[0].status, DeliveryStatus::Pending);
    assert_eq!(d[0].next_attempt_at, Some(t0()));
    assert!(
        s.list_deliveries(&tenant("acme"), &only_rolled.id, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // An event older than the endpoint is skipped.
    let mut old = events
        .publish(vec![event(EventType::KeyCreated, Some("acme"), 5)])
        .await
        .unwrap();
    old[0].time = t0() - Duration::seconds(1);
    assert_eq!(s.fan_out(&old, old[0].id, t0()).await.unwrap(), 0);
}

#[tokio::test]
async fn due_deliveries_are_claimed_once_and_retried_then_dead_then_redelivered() {
    let (events, s) = stores().await;
    let ep = endpoint("acme", "key.created");
    s.create_endpoint(&ep, &secret("whsec_current"), 20)
        .await
        .unwrap();
    let mut published = events
        .publish(vec![
            event(EventType::KeyCreated, Some("acme"), 1),
            event(EventType::KeyCreated, Some("acme"), 2),
        ])
        .await
        .unwrap();
    for e in &mut published {
        e.time = t0();
    }
    s.fan_out(&published, published[1].id, t0()).await.unwrap();
    // Nothing is due before its time.
    let early = t0() - Duration::seconds(1);
    assert!(
        s.claim_due(early, early + Duration::minutes(5), 16)
            .await
            .unwrap()
            .is_empty()
    );
    let lease = t0() + Duration::minutes(5);
    let claimed = s.claim_due(t0(), lease, 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "the limit holds");
    let a = &claimed[0];
    assert_eq!(a.url, ep.url);
    assert_eq!(a.event_id, published[0].id);
    assert_eq!(a.body, published[0].to_json());
    assert_eq!(a.secrets.len(), 1);
    assert_eq!(a.secrets[0].expose_secret(), "whsec_current");
    assert_eq!((a.attempts, a.retry_from), (0, t0()));
    // Claimed: not due again within its lease; the other one is.
    let second = s.claim_due(t0(), lease, 16).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].event_id, published[1].id);
    assert!(s.claim_due(t0(), lease, 16).await.unwrap().is_empty());
    // A failed attempt is scheduled again.
    let retry_at = t0() + Duration::seconds(8);
    let failed = AttemptResult {
        at: t0(),
        status_code: Some(500),
        error: Some("status 500".into()),
        next: Next::RetryAt(retry_at),
    };
    assert!(s.finish(a, &failed).await.unwrap());
    assert!(!s.finish(a, &failed).await.unwrap(), "a claim counts once");
    let d = &s
        .list_deliveries(&tenant("acme"), &ep.id, None, None, 1)
        .await
        .unwrap()[0];
    assert_eq!(
        (d.status, d.attempts, d.next_attempt_at, d.last_status_code),
        (DeliveryStatus::Pending, 1, Some(retry_at), Some(500))
    );
    assert_eq!(d.last_error.as_deref(), Some("status 500"));
    // An expired lease is claimed again; the older claim's result then counts for nothing.
    let retried = s
        .claim_due(retry_at, retry_at + Duration::minutes(5), 16)
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    let after_lease = lease + Duration::seconds(1);
    let reclaimed = s
        .claim_due(after_lease, after_lease + Duration::minutes(5), 16)
        .await
        .unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].delivery_id, second[0].delivery_id);
    let ok = AttemptResult {
        at: after_lease,
        status_code: Some(204),
        error: None,
        next: Next::Delivered,
    };
    assert!(!s.finish(&second[0], &ok).await.unwrap(), "overtaken");
    assert!(s.finish(&reclaimed[0], &ok).await.unwrap());
    // The first one dies.
    let dead = AttemptResult {
        at: retry_at,
        status_code: None,
        error: Some("timeout".into()),
        next: Next::Dead,
    };
    assert!(s.finish(&retried[0], &dead).await.unwrap());
    let acme = tenant("acme");
    let listed = |status| s.list_deliveries(&acme, &ep.id, Some(status), None, 10);
    let dead_list = listed(DeliveryStatus::Dead).await.unwrap();
    assert_eq!(dead_list.len(), 1);
    assert_eq!(dead_list[0].attempts, 2);
    assert_eq!(dead_list[0].next_attempt_at, None);
    let delivered = listed(DeliveryStatus::Delivered).await.unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].delivered_at, Some(after_lease));
    assert!(listed(DeliveryStatus::Pending).await.unwrap().is_empty());
    // Redelivery: not across tenants, not while pending; then due at once with a new window.
    let other = tenant("other");
    assert!(matches!(
        s.redeliver(&other, &ep.id, &dead_list[0].id, t0()).await,
        Err(WebhookError::NotFound)
    ));
    let later = t0() + Duration::days(2);
    let again = s
        .redeliver(&acme, &ep.id, &dead_list[0].id, later)
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.next_attempt_at),
        (DeliveryStatus::Pending, Some(later))
    );
    assert!(matches!(
        s.redeliver(&acme, &ep.id, &dead_list[0].id, later).await,
        Err(WebhookError::DeliveryPending)
    ));
    let claimed = s
        .claim_due(later, later + Duration::minutes(5), 16)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].retry_from, claimed[0].attempts), (later, 2));
    // A disabled endpoint's deliveries wait.
    s.finish(
        &claimed[0],
        &AttemptResult {
            next: Next::RetryAt(later),
            ..dead
        },
    )
    .await
    .unwrap();
    let off = EndpointChange {
        enabled: Some(false),
        ..Default::default()
    };
    s.update_endpoint(&acme, &ep.id, &off, later).await.unwrap();
    assert!(s.claim_due(later, later, 16).await.unwrap().is_empty());
    // Purge removes finished deliveries only; delete removes the rest.
    assert_eq!(s.purge(later + Duration::days(1)).await.unwrap(), 1);
    assert_eq!(
        s.list_deliveries(&acme, &ep.id, None, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    s.delete_endpoint(&acme, &ep.id).await.unwrap();
    assert!(s.claim_due(later, later, 16).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rolled_secret_signs_beside_the_new_one_until_its_overlap_ends() {
    let (events, s) = stores().await;
    let ep = endpoint("acme", "key.created");
    s.create_endpoint(&ep, &secret("whsec_old"), 20)
        .await
        .unwrap();
    let acme = tenant("acme");
    let until = t0() + Duration::hours(24);
    let rolled = s
        .roll_secret(&acme, &ep.id, &secret("whsec_new"), until, t0())
        .await
        .unwrap();
    assert_eq!(rolled.previous_secret_expires_at, Some(until));
    let mut published = events
        .publish(vec![event(EventType::KeyCreated, Some("acme"), 1)])
        .await
        .unwrap();
    published[0].time = t0();
    s.fan_out(&published, published[0].id, t0()).await.unwrap();
    let a = s.claim_due(t0(), t0(), 16).await.unwrap();
    let names: Vec<&str> = a[0].secrets.iter().map(|s| s.expose_secret()).collect();
    assert_eq!(names, ["whsec_new", "whsec_old"]);
    // After the overlap only the new one.
    let a = s.claim_due(until, until, 16).await.unwrap();
    let names: Vec<&str> = a[0].secrets.iter().map(|s| s.expose_secret()).collect();
    assert_eq!(names, ["whsec_new"]);
}

#[tokio::test]
async fn state_survives_a_restart_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite3");
    let events = SqliteEventStore::open(&path).await.unwrap();
    let s = events.webhooks();
    let ep = endpoint("acme", "key.created");
    s.create_endpoint(&ep, &secret("whsec_x"), 20)
        .await
        .unwrap();
    let mut published = events
        .publish(vec![event(EventType::KeyCreated, Some("acme"), 1)])
        .await
        .unwrap();
    published[0].time = t0();
    s.fan_out(&published, published[0].id, t0()).await.unwrap();
    events.close().await;
    drop(events);
    // Reopened on its own (as beside NATS): the cursor and the delivery are there.
    let again = SqliteWebhookStore::open(&path).await.unwrap();
    assert_eq!(again.cursor().await.unwrap(), published[0].id);
    assert_eq!(again.claim_due(t0(), t0(), 16).await.unwrap().len(), 1);
    again.close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn the_cursor_starts_at_the_newest_stored_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite3");
    // Events stored before the webhook tables existed are not fanned out on upgrade: the
    // migration starts the cursor at the newest event. Here, on a fresh file, it starts at 0.
    let events = SqliteEventStore::open(&path).await.unwrap();
    assert_eq!(events.webhooks().cursor().await.unwrap(), 0);
    events
        .publish(vec![event(EventType::KeyCreated, Some("acme"), 1)])
        .await
        .unwrap();
    assert_eq!(
        events.webhooks().cursor().await.unwrap(),
        0,
        "moved only by fan-out"
    );
}
