//! Tests of [`super`] over the real SQLite store in a file, reading the stored column with
//! SQL of its own.
use portcullis_core::{ExposeSecret, ids};
use portcullis_events::{EventBackend, EventType, TypeSet, conformance::event};
use portcullis_sqlite::SqliteEventStore;

use super::*;

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
}

fn endpoint(tenant: &str) -> Endpoint {
    Endpoint {
        id: ids::new_id("whk"),
        tenant: TenantId::parse(tenant).unwrap(),
        url: "https://hooks.example.com/hook".into(),
        description: None,
        types: TypeSet::all(),
        enabled: true,
        created_at: t0(),
        updated_at: t0(),
        previous_secret_expires_at: None,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    events: SqliteEventStore,
    plain: Arc<dyn WebhookStore>,
    sealed: SealedWebhookStore,
    db: sqlx::SqlitePool,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite3");
    let events = SqliteEventStore::open(&path).await.unwrap();
    let plain: Arc<dyn WebhookStore> = Arc::new(events.webhooks());
    let sealed = SealedWebhookStore::new(plain.clone(), &Pepper::generate().0);
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        events,
        plain,
        sealed,
        db,
    }
}

impl Fixture {
    async fn stored(&self, id: &str) -> (String, Option<String>) {
        sqlx::query_as("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = ?")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// One event for `tenant`, fanned out, and every due delivery claimed.
    async fn claim(&self, tenant: &str) -> Vec<Attempt> {
        let published = self
            .events
            .publish(vec![event(EventType::KeyCreated, Some(tenant), 1)])
            .await
            .unwrap();
        let through = published.last().unwrap().id;
        self.sealed
            .fan_out(&published, through, t0())
            .await
            .unwrap();
        let later = t0() + time::Duration::hours(1);
        self.sealed.claim_due(later, later, 100).await.unwrap()
    }
}

fn secrets(a: &Attempt) -> Vec<&str> {
    a.secrets.iter().map(|s| s.expose_secret()).collect()
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_open_only_for_their_endpoint() {
    let f = fixture().await;
    let (a, b) = (endpoint("acme"), endpoint("acme"));
    let secret = SecretString::from("whsec_for_a".to_owned());
    f.sealed.create_endpoint(&a, &secret, 20).await.unwrap();
    f.sealed
        .create_endpoint(&b, &SecretString::from("whsec_for_b".to_owned()), 20)
        .await
        .unwrap();
    let (stored, _) = f.stored(&a.id).await;
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    assert!(!stored.contains("whsec_for_a"));
    // B's row gets A's sealed secret (a database writer's copy): it does not open there.
    sqlx::query("UPDATE webhook_endpoints SET secret = ? WHERE id = ?")
        .bind(&stored)
        .bind(&b.id)
        .execute(&f.db)
        .await
        .unwrap();
    let claimed = f.claim("acme").await;
    assert_eq!(claimed.len(), 2);
    for at in &claimed {
        if at.endpoint_id == a.id {
            assert_eq!(secrets(at), ["whsec_for_a"]);
        } else {
            assert!(at.secrets.is_empty(), "a copied secret must not open");
        }
    }
}

#[tokio::test]
async fn plaintext_secrets_are_sealed_once_and_a_roll_keeps_both() {
    let f = fixture().await;
    let e = endpoint("acme");
    // An endpoint stored by an earlier version: plaintext, rolled once.
    let old = SecretString::from("whsec_old".to_owned());
    let new = SecretString::from("whsec_new".to_owned());
    f.plain.create_endpoint(&e, &old, 20).await.unwrap();
    let until = t0() + time::Duration::days(2);
    f.plain
        .roll_secret(&e.tenant, &e.id, &new, until, t0())
        .await
        .unwrap();
    assert_eq!(
        f.stored(&e.id).await,
        ("whsec_new".into(), Some("whsec_old".into()))
    );
    assert_eq!(f.sealed.seal_plaintext().await.unwrap(), 2);
    assert_eq!(f.sealed.seal_plaintext().await.unwrap(), 0, "sealed once");
    let (current, previous) = f.stored(&e.id).await;
    assert!(current.starts_with("sealed:v1:") && !current.contains("whsec_new"));
    let previous = previous.unwrap();
    assert!(previous.starts_with("sealed:v1:") && !previous.contains("whsec_old"));
    // A roll through the sealing store seals the new one and keeps the sealed old one.
    let newest = SecretString::from("whsec_newest".to_owned());
    f.sealed
        .roll_secret(&e.tenant, &e.id, &newest, until, t0())
        .await
        .unwrap();
    let claimed = f.claim("acme").await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(secrets(&claimed[0]), ["whsec_newest", "whsec_new"]);
}

#[tokio::test]
async fn a_plaintext_secret_left_unsealed_never_signs() {
    let f = fixture().await;
    let e = endpoint("acme");
    f.plain
        .create_endpoint(&e, &SecretString::from("whsec_plain".to_owned()), 20)
        .await
        .unwrap();
    let claimed = f.claim("acme").await;
    assert_eq!(claimed.len(), 1);
    assert!(claimed[0].secrets.is_empty());
}
