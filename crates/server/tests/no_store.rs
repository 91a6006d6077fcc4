//! Every answer that carries a secret is marked `Cache-Control: no-store`, over real HTTP: each
//! secret-bearing endpoint is called, and every answer of the admin API called here whose JSON
//! holds a `secret` field must carry the header (so a new endpoint that returns a secret without
//! going through `no_store::SecretJson` fails this test once it is added to the list).
use portcullis_server::no_store::NO_STORE;
use portcullis_testkit::spawn_with;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn every_answer_with_a_secret_is_no_store() {
    let s = spawn_with(|c| c.events.webhooks.danger_allow_http = true).await;
    s.tenant("acme").await;
    let (key_id, _) = s
        .key("acme", json!({"name": "k", "environment": "test"}))
        .await;
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/tenants/acme/webhooks",
            &s.root_secret,
            Some(json!({"url": "https://hooks.example.com/in"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let hook = v["webhook"]["id"].as_str().expect("webhook id").to_owned();
    let cases: Vec<(Method, String, Option<Value>, bool)> = vec![
        (
            Method::POST,
            "/v1/tenants/acme/keys".into(),
            Some(json!({"name": "k2", "environment": "test"})),
            true,
        ),
        (
            Method::POST,
            format!("/v1/tenants/acme/keys/{key_id}/roll"),
            None,
            true,
        ),
        (
            Method::POST,
            "/v1/tenants/acme/webhooks".into(),
            Some(json!({"url": "https://hooks.example.com/b"})),
            true,
        ),
        (
            Method::POST,
            format!("/v1/tenants/acme/webhooks/{hook}/roll-secret"),
            None,
            true,
        ),
        (
            Method::POST,
            "/v1/admin-keys".into(),
            Some(json!({"name": "ops", "tenant_id": "acme", "scopes": ["keys:read"]})),
            true,
        ),
        // Answers without a secret, for contrast.
        (Method::GET, "/v1/admin-keys".into(), None, false),
        (
            Method::GET,
            format!("/v1/tenants/acme/keys/{key_id}"),
            None,
            false,
        ),
        (Method::GET, "/v1/tenants/acme/keys".into(), None, false),
        (
            Method::GET,
            format!("/v1/tenants/acme/webhooks/{hook}"),
            None,
            false,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            Some(json!({"id": "beta", "name": "B"})),
            false,
        ),
    ];
    for (method, path, body, secret) in cases {
        let resp = s.call(method.clone(), &path, &s.root_secret, body).await;
        let status = resp.status();
        let cache = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let v: Value = resp.json().await.expect("JSON");
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        let holds_secret = v.get("secret").is_some_and(Value::is_string);
        assert_eq!(holds_secret, secret, "{method} {path}: {v}");
        if holds_secret {
            assert_eq!(cache.as_deref(), Some(NO_STORE), "{method} {path}");
        }
    }
}
