//! A key's own rate limit never loosens the route's policy, over real HTTP: an admin key bound
//! to the tenant can give a key a limit of 1,000,000/s, and the gateway still holds it to the
//! operator's policy of the route; a stricter own limit still applies.
mod support;

use portcullis_server::gateway::config::RateLimitConfig;
use portcullis_testkit::{TestServer, spawn_with};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::{gateway::route, upstream};

/// A gateway with a route `/limited` under the policy `tight` (3 per 60 s) and `/open` without.
async fn setup() -> (TestServer, upstream::Upstream) {
    let up = upstream::start().await;
    let mut g = support::gateway::config(format!("http://{}", up.addr), 1_000);
    g.policies.insert(
        "tight".into(),
        RateLimitConfig {
            requests: 3,
            per_seconds: 60,
            burst: None,
        },
    );
    let mut limited = route("limited", "/limited", "main");
    limited.rate_limit = Some("tight".into());
    g.routes = vec![limited, route("open", "/open", "main")];
    let s = spawn_with(move |c| c.gateway = g).await;
    s.tenant("acme").await;
    (s, up)
}

/// Creates a key of `acme` with the tenant-bound admin key `admin`; returns its secret.
async fn key_by(s: &TestServer, admin: &str, rate_limit: Value) -> String {
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/tenants/acme/keys",
            admin,
            Some(json!({"name": "k", "environment": "live", "rate_limit": rate_limit})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v["secret"].as_str().expect("secret").to_owned()
}

/// Statuses of `n` GETs of `path` with `key`, and the `RateLimit-Policy` of the last one.
async fn statuses(s: &TestServer, path: &str, key: &str, n: usize) -> (Vec<u16>, String) {
    let c = Client::new();
    let mut out = Vec::new();
    let mut policy = String::new();
    for _ in 0..n {
        let resp = c
            .get(s.gateway_url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("send");
        out.push(resp.status().as_u16());
        policy = resp
            .headers()
            .get("ratelimit-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
    }
    (out, policy)
}

#[tokio::test]
async fn a_tenant_set_key_limit_cannot_exceed_the_route_policy() {
    let (s, _up) = setup().await;
    let admin = s.admin_key(Some("acme"), &["keys:write"]).await;

    // A loose own limit: the route's policy still refuses the fourth request.
    let loose = key_by(
        &s,
        &admin,
        json!({"requests": 1_000_000, "per_seconds": 1, "burst": 1_000_000}),
    )
    .await;
    let (got, policy) = statuses(&s, "/limited", &loose, 4).await;
    assert_eq!(got, [200, 200, 200, 429], "the route's policy holds");
    assert_eq!(
        policy, "\"tight\";q=3;w=60",
        "refused by the route's policy"
    );
    // Where the route has no policy, the key's own limit is the one that applies.
    let (got, policy) = statuses(&s, "/open", &loose, 2).await;
    assert_eq!(got, [200, 200]);
    assert_eq!(policy, "\"key\";q=1000000;w=1");

    // A strict own limit still applies under a looser policy.
    let strict = key_by(&s, &admin, json!({"requests": 2, "per_seconds": 60})).await;
    let (got, policy) = statuses(&s, "/limited", &strict, 3).await;
    assert_eq!(got, [200, 200, 429], "the key's own, stricter limit holds");
    assert_eq!(policy, "\"key\";q=2;w=60");
}
