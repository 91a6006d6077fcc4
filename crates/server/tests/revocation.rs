//! A revocation reaches every reader: changes made by another writer of the data directory (the
//! operator CLI is one: here a second store handle on the same file, which is what another
//! process is) take effect on a running server within a second, whatever the cache TTL.
mod support;

use std::time::{Duration, Instant};

use portcullis::datadir;
use portcullis_core::{request::UpdateTenant, tenant::TenantId};
use portcullis_server::{audit::AuditLog, ops};
use portcullis_sqlite::SqliteStore;
use portcullis_testkit::{TestServer, spawn_with};
use reqwest::{Client, Method};
use serde_json::json;
use support::{gateway::route, upstream};

/// A server with a gateway (one catch-all route) in front of a real upstream.
async fn setup() -> (TestServer, upstream::Upstream) {
    let up = upstream::start().await;
    let mut g = support::gateway::config(format!("http://{}", up.addr), 1_000);
    g.routes = vec![route("rest", "/", "main")];
    let server = spawn_with(move |c| {
        c.gateway = g;
        assert_eq!(
            c.cache.ttl_seconds, 60,
            "the default TTL, far above a second"
        );
    })
    .await;
    server.tenant("acme").await;
    (server, up)
}

/// Another writer of the server's data directory, as the operator CLI opens it.
async fn other_writer(s: &TestServer) -> SqliteStore {
    SqliteStore::open(&s.config.data_dir.join(datadir::DB_FILE))
        .await
        .expect("open the same database")
}

/// Runs `op` with an operator context on `store` (no cache, no events: another process).
async fn as_operator<T>(
    s: &TestServer,
    store: &SqliteStore,
    op: impl AsyncFnOnce(ops::Ctx<'_>) -> T,
) -> T {
    let audit = AuditLog::disabled();
    let policy = s.state.policy;
    let ctx = ops::Ctx {
        actor: portcullis_server::audit::OPERATOR,
        audit: &audit,
        store,
        pepper: &s.state.pepper,
        policy: &policy,
        now: s.state.clock.now(),
        cache: None,
        events: None,
    };
    op(ctx).await
}

/// Polls `status` until it gives `want`; panics after one second.
async fn within_a_second(what: &str, want: u16, mut status: impl AsyncFnMut() -> u16) {
    let start = Instant::now();
    loop {
        let got = status().await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{what}: still {got} after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn gateway_status(c: &Client, s: &TestServer, secret: &str) -> u16 {
    c.get(s.gateway_url("/v1/things"))
        .bearer_auth(secret)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writers_revocation_reaches_gateway_and_verify_within_a_second() {
    let (s, _up) = setup().await;
    let (id, secret) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    let c = Client::new();
    assert_eq!(gateway_status(&c, &s, &secret).await, 200, "cached now");
    assert_eq!(s.verify(json!({"key": secret})).await["code"], "VALID");

    let other = other_writer(&s).await;
    let acme = TenantId::parse("acme").expect("tenant");
    as_operator(&s, &other, async |ctx| {
        ops::revoke_key(ctx, &acme, &id).await
    })
    .await
    .expect("revoke");
    within_a_second("gateway after revocation", 401, async || {
        gateway_status(&c, &s, &secret).await
    })
    .await;
    assert_eq!(s.verify(json!({"key": secret})).await["code"], "REVOKED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writers_roll_and_suspension_reach_the_gateway_within_a_second() {
    let (s, _up) = setup().await;
    let (id, secret) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    let (_, other_key) = s
        .key("acme", json!({"name": "k2", "environment": "live"}))
        .await;
    let c = Client::new();
    assert_eq!(gateway_status(&c, &s, &secret).await, 200);
    assert_eq!(gateway_status(&c, &s, &other_key).await, 200);

    // A roll without grace: the old secret stops at once.
    let other = other_writer(&s).await;
    let acme = TenantId::parse("acme").expect("tenant");
    let rolled = as_operator(&s, &other, async |ctx| {
        let input = portcullis_core::request::RollKey {
            grace_seconds: Some(0),
        };
        ops::roll_key(ctx, &acme, &id, input).await
    })
    .await
    .expect("roll");
    within_a_second("old secret after a roll", 401, async || {
        gateway_status(&c, &s, &secret).await
    })
    .await;
    let new = portcullis_core::ExposeSecret::expose_secret(&rolled.secret).to_owned();
    assert_eq!(
        gateway_status(&c, &s, &new).await,
        200,
        "the new secret works"
    );

    // A suspension drops every cached key of the tenant.
    as_operator(&s, &other, async |ctx| {
        let input: UpdateTenant =
            serde_json::from_value(json!({"status": "suspended"})).expect("input");
        ops::update_tenant(ctx, &acme, input).await
    })
    .await
    .expect("suspend");
    within_a_second("a key of a suspended tenant", 403, async || {
        gateway_status(&c, &s, &other_key).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writers_admin_key_revocation_reaches_the_api_within_a_second() {
    let (s, _up) = setup().await;
    let (id, admin) = s.admin_key_with_id(None, &["tenants:read"]).await;
    let list = async || s.json(Method::GET, "/v1/tenants", &admin, None).await.0;
    assert_eq!(list().await, 200, "cached now");
    let other = other_writer(&s).await;
    as_operator(&s, &other, async |ctx| {
        ops::revoke_admin_key(ctx, &id).await
    })
    .await
    .expect("revoke");
    within_a_second("a revoked admin key", 401, list).await;
}

/// Reads an SSE response until it ends; returns what it received, or `None` if it was still
/// open after `wait`.
async fn read_to_end(resp: reqwest::Response, wait: Duration) -> Option<String> {
    use futures_util::StreamExt;
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
    };
    tokio::time::timeout(wait, read).await.ok()?;
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_of_a_revoked_admin_key_end_within_a_second() {
    let (s, _up) = setup().await;
    let (id, watcher) = s.admin_key_with_id(Some("acme"), &["events:read"]).await;
    let open = async |key: &str| {
        let resp = s
            .client
            .get(s.url("/v1/events"))
            .bearer_auth(key)
            .send()
            .await
            .expect("open");
        assert_eq!(resp.status(), 200);
        resp
    };
    let (stream, bystander) = (open(&watcher).await, open(&s.root_secret).await);

    // Revoked by another writer of the data directory, as `portcullis admin-key revoke` does.
    let other = other_writer(&s).await;
    as_operator(&s, &other, async |ctx| {
        ops::revoke_admin_key(ctx, &id).await
    })
    .await
    .expect("revoke");
    let text = read_to_end(stream, Duration::from_secs(1))
        .await
        .expect("the stream of the revoked key ended within a second");
    assert!(text.contains("event: reconnect"), "{text}");
    assert!(text.contains(r#""reason":"revoked""#), "{text}");
    assert!(
        read_to_end(bystander, Duration::from_millis(600))
            .await
            .is_none(),
        "other streams stay open"
    );
}
