//! Dead keys and keys in URLs over real HTTP.
//!
//! - A revoked or expired key is a 401 `invalid_api_key` before any tenant, environment or
//!   header check, and each attempt counts towards the brute-force throttle.
//! - A key in the URL, however encoded and wherever it sits, is refused before anything routes,
//!   forwards or records the request.
mod support;

use std::sync::atomic::Ordering;

use portcullis_core::{ExposeSecret, clock::Clock};
use portcullis_store::Store;
use portcullis_testkit::{TestServer, spawn_with};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::{gateway::route, upstream};

async fn setup(threshold: u32) -> (TestServer, upstream::Upstream) {
    let up = upstream::start().await;
    let mut g = support::gateway::config(format!("http://{}", up.addr), 1_000);
    let mut live = route("live-only", "/live", "main");
    live.environment = portcullis_server::gateway::config::RouteEnvironment::Live;
    g.routes = vec![live, route("rest", "/", "main")];
    g.brute_force.threshold = threshold;
    let s = spawn_with(move |c| c.gateway = g).await;
    s.tenant("acme").await;
    s.tenant("globex").await;
    (s, up)
}

async fn gateway(s: &TestServer, path: &str, key: &str, tenant: Option<&str>) -> (u16, Value) {
    let mut req = Client::new().get(s.gateway_url(path)).bearer_auth(key);
    if let Some(t) = tenant {
        req = req.header("x-tenant-id", t);
    }
    let resp = req.send().await.expect("send");
    let st = resp.status().as_u16();
    (st, resp.json().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_keys_are_401_before_tenant_and_environment_checks() {
    let (s, _up) = setup(100).await;
    let (id, revoked) = s
        .key("acme", json!({"name": "r", "environment": "test"}))
        .await;
    let expires = (s.clock.now() + time::Duration::seconds(60))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let (_, expired) = s
        .key(
            "acme",
            json!({"name": "e", "environment": "test", "expires_at": expires}),
        )
        .await;
    let (st, v) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{id}/revoke"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    s.clock.advance(time::Duration::seconds(61));

    for key in [&revoked, &expired] {
        // Another tenant named, an invalid tenant header, a live-only route for a test key.
        for (path, tenant) in [
            ("/x", Some("globex")),
            ("/x", Some("NOT A TENANT!")),
            ("/live/x", None),
            ("/live/x", Some("globex")),
        ] {
            let (st, v) = gateway(&s, path, key, tenant).await;
            assert_eq!(
                (st, code(&v)),
                (401, "invalid_api_key"),
                "{path} {tenant:?}"
            );
        }
    }
    // The verify API tells a root caller the real reason, and a tenant-bound caller of another
    // tenant nothing.
    let v = s.verify(json!({"key": revoked, "tenant": "globex"})).await;
    assert_eq!(v["code"], "REVOKED", "{v}");
    let globex = s.admin_key(Some("globex"), &["keys:verify"]).await;
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/verify",
            &globex,
            Some(json!({"key": revoked})),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (200, Some("NOT_FOUND")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_admin_key_is_401_before_its_tenant_header_is_read() {
    let (s, _up) = setup(100).await;
    let (id, admin) = s.admin_key_with_id(Some("acme"), &["keys:read"]).await;
    // Revoked before it was ever used (nothing cached).
    s.store
        .revoke_admin_key(&id, s.clock.now())
        .await
        .expect("revoke");
    let resp = s
        .client
        .get(s.url("/v1/tenants/acme/keys"))
        .bearer_auth(&admin)
        .header("x-tenant-id", "NOT A TENANT!")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_with_dead_keys_count_towards_the_brute_force_throttle() {
    let (s, _up) = setup(3).await;
    let (id, revoked) = s
        .key("acme", json!({"name": "r", "environment": "live"}))
        .await;
    let (_, good) = s
        .key("acme", json!({"name": "g", "environment": "live"}))
        .await;
    let (st, _) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{id}/revoke"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(st, 200);
    // More failures than the threshold block the address.
    for _ in 0..4 {
        let (st, v) = gateway(&s, "/x", &revoked, Some("globex")).await;
        assert_eq!((st, code(&v)), (401, "invalid_api_key"));
    }
    let (st, v) = gateway(&s, "/x", &good, None).await;
    assert_eq!((st, code(&v)), (429, "too_many_failed_attempts"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_urls_are_refused_however_encoded_and_never_recorded() {
    let (s, up) = setup(1_000).await;
    let (_, key) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    let admin = portcullis_core::key::generate(portcullis_core::key::ADMIN_PREFIX);
    let lower: String = key.bytes().map(|b| format!("%{b:02x}")).collect();
    let mut targets = Vec::new();
    for k in [key.as_str(), admin.expose_secret()] {
        let escaped = k.replacen('_', "%5F", 2);
        targets.extend([
            format!("/v1/things/{escaped}"),
            format!("/v1/things/{}", k.replacen('_', "%5f", 1)),
            format!("/v1/files/report-{k}.pdf"),
            format!("/v1/files/x;jsessionid={escaped}"),
            format!("/v1/things?q=pre{escaped}"),
            format!("/v1/things?q={}", escaped.replace('%', "%25")),
        ]);
    }
    targets.push(format!("/v1/things/{lower}"));
    for target in &targets {
        for addr in [s.gateway_addr.expect("gateway"), s.addr] {
            let resp = support::raw::get(addr, target).await;
            assert!(resp.starts_with("HTTP/1.1 400"), "{target}: {resp}");
            assert!(resp.contains("api_key_in_query"), "{target}: {resp}");
        }
    }
    assert_eq!(
        up.seen.requests.load(Ordering::SeqCst),
        0,
        "nothing forwarded"
    );
    // A key sent as the request id is replaced, not echoed, forwarded or recorded.
    let (_, good) = s
        .key("acme", json!({"name": "g", "environment": "live"}))
        .await;
    let resp = Client::new()
        .get(s.gateway_url("/v1/things"))
        .bearer_auth(&good)
        .header("x-request-id", &key)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_ne!(resp.headers()["x-request-id"], key.as_str());
    let seen: Value = resp.json().await.expect("echo");
    assert!(!seen.to_string().contains(&key), "{seen}");
    let records = format!(
        "{:?}{:?}",
        s.audit_records("acme").await,
        s.audit_records("_system").await
    );
    let body = &key[key.len() - 38..];
    assert!(!records.contains(body), "no audit record holds the key");
    assert!(!records.contains(&admin.expose_secret()[9..]));
}
