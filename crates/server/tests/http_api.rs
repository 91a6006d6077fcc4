//! The admin and verify APIs over real sockets on 127.0.0.1:0.
use portcullis_testkit::spawn;
use reqwest::Method;
use serde_json::{Value, json};
use time::Duration;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn tour_create_tenant_key_and_verify() {
    let s = spawn().await;
    let t = s.tenant("acme").await;
    assert_eq!(t["status"], "active");
    assert_eq!(t["key_prefix"], "sk");
    let (id, secret) = s
        .key(
            "acme",
            json!({"name": "backend", "environment": "live", "scopes": ["invoices:read"]}),
        )
        .await;
    assert!(secret.starts_with("sk_live_"));
    let v = s
        .verify(json!({"key": secret, "tenant": "acme", "scopes": ["invoices:read"]}))
        .await;
    assert_eq!(v["valid"], true);
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["key_id"], id.as_str());
    assert_eq!(v["environment"], "live");
    // The secret is shown once: reading the key back never includes it.
    let (st, k) = s
        .json(
            Method::GET,
            &format!("/v1/tenants/acme/keys/{id}"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert!(!k.to_string().contains(&secret));
    assert_eq!(
        k["hint"],
        format!("sk_live_…{}", &secret[secret.len() - 4..])
    );
}

#[tokio::test]
async fn verify_reports_every_code() {
    let s = spawn().await;
    s.tenant("acme").await;
    s.tenant("globex").await;
    let (_, live) = s
        .key("acme", json!({"name": "a", "environment": "live", "scopes": ["invoices:*"], "ip_allowlist": ["10.0.0.0/8"]}))
        .await;
    let check = |body: Value, want: &'static str| {
        let s = &s;
        async move {
            let v = s.verify(body.clone()).await;
            assert_eq!(v["code"], want, "{body}: {v}");
            assert_eq!(v["valid"], want == "VALID");
        }
    };
    check(
        json!({"key": live, "ip": "10.1.2.3", "scopes": ["invoices:write"]}),
        "VALID",
    )
    .await;
    check(json!({"key": "sk_live_nonsense"}), "NOT_FOUND").await;
    let unknown = portcullis_core::key::generate("sk_live");
    use portcullis_core::ExposeSecret;
    check(json!({"key": unknown.expose_secret()}), "NOT_FOUND").await;
    check(
        json!({"key": live, "tenant": "globex", "ip": "10.1.2.3"}),
        "TENANT_MISMATCH",
    )
    .await;
    check(
        json!({"key": live, "environment": "test", "ip": "10.1.2.3"}),
        "ENVIRONMENT_MISMATCH",
    )
    .await;
    check(json!({"key": live, "ip": "192.168.0.1"}), "IP_NOT_ALLOWED").await;
    check(json!({"key": live}), "IP_NOT_ALLOWED").await;
    let v = s
        .verify(json!({"key": live, "ip": "10.0.0.1", "scopes": ["customers:read"]}))
        .await;
    assert_eq!(v["code"], "INSUFFICIENT_SCOPE");
    assert_eq!(v["missing_scopes"], json!(["customers:read"]));
    // Suspension applies at once, and lifting it too.
    let (st, _) = s
        .json(
            Method::PATCH,
            "/v1/tenants/acme",
            &s.root_secret,
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(st, 200);
    check(json!({"key": live, "ip": "10.0.0.1"}), "TENANT_SUSPENDED").await;
    s.json(
        Method::PATCH,
        "/v1/tenants/acme",
        &s.root_secret,
        Some(json!({"status": "active"})),
    )
    .await;
    check(json!({"key": live, "ip": "10.0.0.1"}), "VALID").await;
}

#[tokio::test]
async fn test_keys_and_live_keys_never_cross() {
    let s = spawn().await;
    s.tenant("acme").await;
    let (_, test) = s
        .key("acme", json!({"name": "t", "environment": "test"}))
        .await;
    assert!(test.starts_with("sk_test_"));
    assert_eq!(
        s.verify(json!({"key": test, "environment": "live"})).await["code"],
        "ENVIRONMENT_MISMATCH"
    );
    assert_eq!(
        s.verify(json!({"key": test, "environment": "test"})).await["code"],
        "VALID"
    );
}

#[tokio::test]
async fn expiry_and_roll_grace_follow_the_clock() {
    let s = spawn().await;
    s.tenant("acme").await;
    let expires = s.clock_now() + Duration::hours(2);
    let (id, old) = s
        .key(
            "acme",
            json!({"name": "k", "environment": "live", "expires_at": rfc(expires)}),
        )
        .await;
    let (st, r) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{id}/roll"),
            &s.root_secret,
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let new = r["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    assert_eq!(r["key"]["id"], id.as_str(), "same key id");
    assert_eq!(
        s.verify(json!({"key": old})).await["code"],
        "VALID",
        "old secret within grace"
    );
    assert_eq!(s.verify(json!({"key": new})).await["code"], "VALID");
    s.clock.advance(Duration::seconds(3600));
    assert_eq!(
        s.verify(json!({"key": old})).await["code"],
        "EXPIRED",
        "old secret after grace"
    );
    assert_eq!(s.verify(json!({"key": new})).await["code"], "VALID");
    s.clock.advance(Duration::seconds(3600));
    assert_eq!(
        s.verify(json!({"key": new})).await["code"],
        "EXPIRED",
        "key past expires_at"
    );
}

#[tokio::test]
async fn roll_with_zero_grace_and_revoke_apply_at_once() {
    let s = spawn().await;
    s.tenant("acme").await;
    let (id, old) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    assert_eq!(s.verify(json!({"key": old})).await["code"], "VALID"); // now cached
    let (_, r) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{id}/roll"),
            &s.root_secret,
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    let new = r["secret"].as_str().expect("secret").to_owned();
    assert_eq!(s.verify(json!({"key": old})).await["code"], "EXPIRED");
    assert_eq!(s.verify(json!({"key": new})).await["code"], "VALID"); // cached
    let (st, k) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{id}/revoke"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert!(k["revoked_at"].is_string());
    assert_eq!(
        s.verify(json!({"key": new})).await["code"],
        "REVOKED",
        "the next request is rejected"
    );
    // Rolling a revoked key is refused; revoking again is harmless.
    let (st, v) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{id}/roll"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!((st, code(&v)), (409, "key_revoked"));
    let (st, k2) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{id}/revoke"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!((st, &k2["revoked_at"]), (200, &k["revoked_at"]));
}

#[tokio::test]
async fn update_takes_effect_at_once() {
    let s = spawn().await;
    s.tenant("acme").await;
    let (id, secret) = s
        .key(
            "acme",
            json!({"name": "k", "environment": "live", "scopes": ["a:read"]}),
        )
        .await;
    assert_eq!(
        s.verify(json!({"key": secret, "scopes": ["b:read"]})).await["code"],
        "INSUFFICIENT_SCOPE"
    );
    let (st, k) = s
        .json(Method::PATCH, &format!("/v1/tenants/acme/keys/{id}"), &s.root_secret, Some(json!({"scopes": ["a:read", "b:read"], "external_id": "cus_1", "metadata": {"plan": "pro"}})))
        .await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["external_id"], "cus_1");
    let v = s.verify(json!({"key": secret, "scopes": ["b:read"]})).await;
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["metadata"]["plan"], "pro");
}

#[tokio::test]
async fn listing_paginates_and_filters() {
    let s = spawn().await;
    s.tenant("acme").await;
    for i in 0..5 {
        let env = if i % 2 == 0 { "live" } else { "test" };
        s.key("acme", json!({"name": format!("k{i}"), "environment": env, "external_id": format!("cus_{}", i % 2)})).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/tenants/acme/keys?limit=2".to_owned();
    loop {
        let (st, page) = s.json(Method::GET, &path, &s.root_secret, None).await;
        assert_eq!(st, 200, "{page}");
        let items = page["data"].as_array().expect("data");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|k| k["name"].as_str().expect("name").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/tenants/acme/keys?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["k0", "k1", "k2", "k3", "k4"]);
    let (_, live) = s
        .json(
            Method::GET,
            "/v1/tenants/acme/keys?environment=live",
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(live["data"].as_array().map(Vec::len), Some(3));
    let (_, by_ext) = s
        .json(
            Method::GET,
            "/v1/tenants/acme/keys?external_id=cus_1",
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(by_ext["data"].as_array().map(Vec::len), Some(2));
    let (_, revoked) = s
        .json(
            Method::GET,
            "/v1/tenants/acme/keys?revoked=true",
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(revoked["data"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn tenant_prefix_and_maximum_lifetime() {
    let s = spawn().await;
    let (st, t) = s
        .json(Method::POST, "/v1/tenants", &s.root_secret, Some(json!({"id": "acme", "name": "Acme", "key_prefix": "acme", "max_key_lifetime_seconds": 86400})))
        .await;
    assert_eq!(st, 201, "{t}");
    let (id, secret) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    assert!(secret.starts_with("acme_live_"));
    let (_, k) = s
        .json(
            Method::GET,
            &format!("/v1/tenants/acme/keys/{id}"),
            &s.root_secret,
            None,
        )
        .await;
    assert!(
        k["expires_at"].is_string(),
        "the maximum lifetime sets a default expiry"
    );
    let too_far = rfc(s.clock_now() + Duration::days(2));
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/tenants/acme/keys",
            &s.root_secret,
            Some(json!({"name": "k", "environment": "live", "expires_at": too_far})),
        )
        .await;
    assert_eq!((st, code(&v)), (400, "invalid_expiry"));
}

#[tokio::test]
async fn bad_input_gets_stable_4xx_codes() {
    let s = spawn().await;
    s.tenant("acme").await;
    let (id, _) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    let root = s.root_secret.clone();
    let keys = "/v1/tenants/acme/keys".to_owned();
    let cases: Vec<(Method, String, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/tenants".into(),
            json!({"id": "A!", "name": "x"}),
            400,
            "invalid_tenant_id",
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            json!({"id": "acme", "name": "x"}),
            409,
            "tenant_exists",
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            json!({"id": "newco", "name": "x", "key_prefix": "Bad_"}),
            400,
            "invalid_key_prefix",
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            json!({"id": "newco", "name": ""}),
            400,
            "invalid_name",
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            json!({"id": "newco", "name": "x", "extra": 1}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            keys.clone(),
            json!({"name": "k", "environment": "prod"}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            keys.clone(),
            json!({"name": "k", "environment": "live", "scopes": ["nope"]}),
            400,
            "invalid_scope",
        ),
        (
            Method::POST,
            keys.clone(),
            json!({"name": "k", "environment": "live", "scopes": (0..65).map(|i| format!("r{i}:read")).collect::<Vec<_>>()}),
            400,
            "too_many_scopes",
        ),
        (
            Method::POST,
            keys.clone(),
            json!({"name": "k", "environment": "live", "ip_allowlist": ["10.0.0.0/33"]}),
            400,
            "invalid_cidr",
        ),
        (
            Method::POST,
            keys.clone(),
            json!({"name": "k", "environment": "live", "ip_allowlist": (0..101).map(|i| format!("10.0.{i}.0/24")).collect::<Vec<_>>()}),
            400,
            "too_many_cidrs",
        ),
        (
            Method::POST,
            keys.clone(),
            json!({"name": "k", "environment": "live", "expires_at": "2001-01-01T00:00:00Z"}),
            400,
            "invalid_expiry",
        ),
        (
            Method::POST,
            keys.clone(),
            json!({"name": "k", "environment": "live", "metadata": {"a": "x".repeat(5000)}}),
            400,
            "invalid_metadata",
        ),
        (
            Method::POST,
            keys.clone(),
            json!({"name": "k", "environment": "live", "external_id": ""}),
            400,
            "invalid_external_id",
        ),
        (
            Method::POST,
            "/v1/tenants/nobody/keys".into(),
            json!({"name": "k", "environment": "live"}),
            404,
            "not_found",
        ),
        (
            Method::POST,
            format!("{keys}/{id}/roll"),
            json!({"grace_seconds": 604801}),
            400,
            "invalid_grace_period",
        ),
        (
            Method::POST,
            format!("{keys}/{id}/roll"),
            json!({"grace_seconds": -1}),
            400,
            "invalid_grace_period",
        ),
        (
            Method::GET,
            format!("{keys}/key_01jf0000000000000000000000"),
            Value::Null,
            404,
            "not_found",
        ),
        (
            Method::GET,
            format!("{keys}/../../etc"),
            Value::Null,
            404,
            "not_found",
        ),
        (
            Method::GET,
            format!("{keys}?limit=1000"),
            Value::Null,
            400,
            "invalid_limit",
        ),
        (
            Method::GET,
            format!("{keys}?cursor=garbage"),
            Value::Null,
            400,
            "invalid_cursor",
        ),
        (
            Method::GET,
            format!("{keys}?bogus=1"),
            Value::Null,
            400,
            "invalid_query",
        ),
        (
            Method::POST,
            "/v1/verify".into(),
            json!({"key": "x", "ip": "not-an-ip"}),
            400,
            "invalid_ip",
        ),
        (
            Method::POST,
            "/v1/verify".into(),
            json!({"key": "x", "scopes": ["a"]}),
            400,
            "invalid_scope",
        ),
        (
            Method::POST,
            "/v1/verify".into(),
            json!({"kee": "x"}),
            400,
            "invalid_request",
        ),
        (
            Method::DELETE,
            "/v1/verify".into(),
            Value::Null,
            405,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/v2/nothing".into(),
            Value::Null,
            404,
            "not_found",
        ),
    ];
    for (m, path, body, status, want) in cases {
        let b = (!body.is_null()).then_some(body.clone());
        let (st, v) = s.json(m.clone(), &path, &root, b).await;
        assert_eq!((st, code(&v)), (status, want), "{m} {path} {body}: {v}");
        assert!(v["error"]["request_id"].is_string(), "request id in {v}");
    }
    // Raw bodies: malformed JSON, wrong content type, too large.
    let raw = |body: Vec<u8>, ct: &'static str| {
        s.client
            .post(s.url("/v1/tenants"))
            .bearer_auth(&root)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = raw(b"{not json".to_vec(), "application/json")
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(
        code(&r.json::<Value>().await.expect("json")),
        "invalid_json"
    );
    let r = raw(b"id=acme".to_vec(), "application/x-www-form-urlencoded")
        .await
        .expect("send");
    assert_eq!(r.status(), 415);
    let r = raw(vec![b' '; 70 * 1024], "application/json")
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
    assert_eq!(
        code(&r.json::<Value>().await.expect("json")),
        "body_too_large"
    );
    // Nothing half-written: the rejected creations left only the one key.
    let (_, list) = s.json(Method::GET, &keys, &root, None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn credentials_are_checked_uniformly() {
    let s = spawn().await;
    s.tenant("acme").await;
    let (kid, tenant_key) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    let get = |key: Option<&str>| {
        let mut r = s.client.get(s.url("/v1/tenants"));
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.send()
    };
    let r = get(None).await.expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        code(&r.json::<Value>().await.expect("json")),
        "missing_credential"
    );
    let unknown = portcullis_core::key::generate("pc_admin");
    use portcullis_core::ExposeSecret;
    for bad in ["garbage", unknown.expose_secret(), tenant_key.as_str()] {
        let r = get(Some(bad)).await.expect("send");
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.expect("json");
        assert_eq!(code(&v), "invalid_api_key");
        assert!(
            !v.to_string().contains(bad),
            "the answer never echoes the credential"
        );
    }
    assert_eq!(
        get(Some(&s.root_secret)).await.expect("send").status(),
        200,
        "X-API-Key works"
    );
    // A revoked admin key is refused like an unknown one.
    let adm = s.admin_key(None, &[]).await;
    let list = s.store.list_admin_keys().await.expect("list");
    let id = list
        .iter()
        .find(|a| a.name == "test admin")
        .expect("admin")
        .id
        .clone();
    assert_eq!(get(Some(&adm)).await.expect("send").status(), 200);
    use portcullis_store::Store;
    s.store
        .revoke_admin_key(&id, s.clock_now())
        .await
        .expect("revoke");
    s.state.cache.invalidate(&[s.state.pepper.hash(&adm)]);
    assert_eq!(get(Some(&adm)).await.expect("send").status(), 401);
    // Scopes of admin keys are enforced.
    let reader = s.admin_key(None, &["keys:read"]).await;
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/verify",
            &reader,
            Some(json!({"key": tenant_key})),
        )
        .await;
    assert_eq!((st, code(&v)), (403, "insufficient_scope"));
    let (st, _) = s
        .json(
            Method::GET,
            &format!("/v1/tenants/acme/keys/{kid}"),
            &reader,
            None,
        )
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn keys_in_urls_are_refused() {
    let s = spawn().await;
    s.tenant("acme").await;
    let (_, secret) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    for path in [
        format!("/v1/tenants?api_key={secret}"),
        "/v1/tenants?access_token=abc".to_owned(),
        format!("/v1/tenants?q={secret}"),
        format!("/v1/verify/{secret}"),
    ] {
        let r = s
            .client
            .get(s.url(&path))
            .bearer_auth(&s.root_secret)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400, "{path}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(code(&v), "api_key_in_query");
    }
}

#[tokio::test]
async fn health_readiness_metrics_and_request_ids() {
    let s = spawn().await;
    let r = s.client.get(s.url("/healthz")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-request-id").is_some());
    let r = s
        .client
        .get(s.url("/readyz"))
        .header("x-request-id", "trace-abc-1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-request-id"],
        "trace-abc-1",
        "a well-formed id is kept"
    );
    let r = s
        .client
        .get(s.url("/healthz"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .expect("send");
    assert_ne!(r.headers()["x-request-id"], "bad id with spaces");
    s.tenant("acme").await;
    let (_, k) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    s.verify(json!({"key": k})).await;
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("portcullis_verify_decisions_total{code=\"VALID\"} 1"),
        "{text}"
    );
    assert!(text.contains("portcullis_http_requests_total"));
    assert!(text.contains("route=\"/v1/tenants/{tenant}/keys\""));
}

#[tokio::test]
async fn last_used_is_recorded_in_batches() {
    let s = spawn().await;
    s.tenant("acme").await;
    let (id, k) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    s.verify(json!({"key": k})).await;
    use portcullis_store::Store;
    let t = portcullis_core::tenant::TenantId::parse("acme").expect("id");
    let before = s.store.get_key(&t, &id).await.expect("get").expect("key");
    assert_eq!(before.last_used_at, None, "not written on the request path");
    s.state
        .usage
        .flush(s.state.store.as_ref(), &s.state.metrics)
        .await;
    let after = s.store.get_key(&t, &id).await.expect("get").expect("key");
    assert_eq!(after.last_used_at, Some(s.clock_now()));
    let admins = s.store.list_admin_keys().await.expect("admins");
    let root = admins.iter().find(|a| a.name == "root").expect("root");
    assert_eq!(
        root.last_used_at,
        Some(s.clock_now()),
        "admin keys record use too"
    );
}

fn rfc(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

trait Now {
    fn clock_now(&self) -> time::OffsetDateTime;
}

impl Now for portcullis_testkit::TestServer {
    fn clock_now(&self) -> time::OffsetDateTime {
        use portcullis_core::clock::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn store_failures_reveal_nothing_internal() {
    let s = spawn().await;
    s.tenant("acme").await;
    // Warm the admin key into the cache, then take the store away.
    let (st, _) = s
        .json(Method::GET, "/v1/tenants/acme", &s.root_secret, None)
        .await;
    assert_eq!(st, 200);
    s.store.close().await;
    let (st, v) = s
        .json(Method::GET, "/v1/tenants/acme", &s.root_secret, None)
        .await;
    assert_eq!((st, code(&v)), (500, "internal_error"), "{v}");
    let text = v.to_string().to_lowercase();
    for leak in ["sqlite", "pool", "sqlx", "closed", "database"] {
        assert!(!text.contains(leak), "internal detail {leak:?} in {v}");
    }
    assert!(v["error"]["request_id"].is_string());
    let r = s.client.get(s.url("/readyz")).send().await.expect("send");
    assert_eq!(r.status(), 503);
    assert_eq!(
        code(&r.json::<Value>().await.expect("json")),
        "service_unavailable"
    );
    let r = s.client.get(s.url("/healthz")).send().await.expect("send");
    assert_eq!(r.status(), 200, "alive even when not ready");
}

#[tokio::test]
async fn x_tenant_id_scopes_a_request_to_one_tenant() {
    let s = spawn().await;
    s.tenant("acme").await;
    s.tenant("globex").await;
    let (_, globex_key) = s
        .key("globex", json!({"name": "g", "environment": "live"}))
        .await;
    let get = |path: &'static str, tenant: &'static str| {
        s.client
            .get(s.url(path))
            .bearer_auth(&s.root_secret)
            .header("x-tenant-id", tenant)
            .send()
    };
    assert_eq!(
        get("/v1/tenants/acme", "acme")
            .await
            .expect("send")
            .status(),
        200
    );
    let r = get("/v1/tenants/globex", "acme").await.expect("send");
    assert_eq!(r.status(), 403);
    assert_eq!(
        code(&r.json::<Value>().await.expect("json")),
        "tenant_mismatch"
    );
    let r = get("/v1/tenants/acme", "NOT A TENANT").await.expect("send");
    assert_eq!(r.status(), 400);
    // Verify with X-Tenant-Id requires the key to be of that tenant.
    let r = s
        .client
        .post(s.url("/v1/verify"))
        .bearer_auth(&s.root_secret)
        .header("x-tenant-id", "acme")
        .json(&json!({"key": globex_key}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "TENANT_MISMATCH"
    );
}

#[tokio::test]
async fn rate_limits_are_set_changed_and_cleared() {
    let s = spawn().await;
    let root = s.root_secret.clone();
    let (st, t) = s
        .json(
            Method::POST,
            "/v1/tenants",
            &root,
            Some(json!({"id": "acme", "name": "Acme", "rate_limit": {"requests": 1000, "per_seconds": 60}})),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let tenant_limit = json!({"requests": 1000, "per_seconds": 60, "burst": 1000});
    assert_eq!(t["rate_limit"], tenant_limit, "burst defaults to requests");
    assert_eq!(s.tenant("plain").await["rate_limit"], Value::Null);

    let (id, secret) = s
        .key(
            "acme",
            json!({"name": "k", "environment": "live", "rate_limit": {"requests": 100, "per_seconds": 60, "burst": 20}}),
        )
        .await;
    let own = json!({"requests": 100, "per_seconds": 60, "burst": 20});
    let key_path = format!("/v1/tenants/acme/keys/{id}");
    let get_key = || s.json(Method::GET, &key_path, &root, None);
    assert_eq!(get_key().await.1["rate_limit"], own);
    let (plain_id, _) = s
        .key("acme", json!({"name": "p", "environment": "live"}))
        .await;
    let (_, plain) = s
        .json(
            Method::GET,
            &format!("/v1/tenants/acme/keys/{plain_id}"),
            &root,
            None,
        )
        .await;
    assert_eq!(plain["rate_limit"], Value::Null);
    let (_, list) = s
        .json(Method::GET, "/v1/tenants/acme/keys", &root, None)
        .await;
    assert_eq!(list["data"][0]["rate_limit"], own, "listed too");

    // PATCH a key: an object sets, absence keeps, null removes.
    let patch_key = |body: Value| s.json(Method::PATCH, &key_path, &root, Some(body));
    let (st, k) = patch_key(json!({"rate_limit": {"requests": 5, "per_seconds": 1}})).await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(
        k["rate_limit"],
        json!({"requests": 5, "per_seconds": 1, "burst": 5})
    );
    let (_, k) = patch_key(json!({"name": "renamed"})).await;
    assert_eq!(k["rate_limit"]["requests"], 5, "kept: {k}");
    let (st, k) = patch_key(json!({"rate_limit": null})).await;
    assert_eq!((st, &k["rate_limit"]), (200, &Value::Null));
    assert_eq!(get_key().await.1["rate_limit"], Value::Null);

    // PATCH a tenant, with the root key.
    let patch_tenant = |body: Value| s.json(Method::PATCH, "/v1/tenants/acme", &root, Some(body));
    let (st, t) =
        patch_tenant(json!({"rate_limit": {"requests": 10, "per_seconds": 1, "burst": 50}})).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(
        t["rate_limit"],
        json!({"requests": 10, "per_seconds": 1, "burst": 50})
    );
    let (_, t) = patch_tenant(json!({"name": "Acme Inc."})).await;
    assert_eq!(t["rate_limit"]["burst"], 50, "kept: {t}");

    // A changed tenant limit reaches cached keys at once, as a status change does.
    assert_eq!(s.verify(json!({"key": secret})).await["code"], "VALID");
    let hash = s.state.pepper.hash(&secret);
    let cached_tenant_limit = || match s.state.cache.get(&hash) {
        Some(portcullis_server::cache::Entry::Key(k)) => Some(k.found.tenant_rate_limit),
        _ => None,
    };
    assert_eq!(
        cached_tenant_limit().flatten().map(|l| l.burst),
        Some(50),
        "cached with the key"
    );
    let (st, t) = patch_tenant(json!({"rate_limit": null})).await;
    assert_eq!((st, &t["rate_limit"]), (200, &Value::Null));
    assert_eq!(
        cached_tenant_limit(),
        None,
        "the tenant's cached keys dropped"
    );
    assert_eq!(s.verify(json!({"key": secret})).await["code"], "VALID");
    assert_eq!(
        cached_tenant_limit(),
        Some(None),
        "cached again, without it"
    );
}

#[tokio::test]
async fn invalid_rate_limits_get_400_and_change_nothing() {
    let s = spawn().await;
    let root = s.root_secret.clone();
    s.tenant("acme").await;
    let (id, _) = s
        .key(
            "acme",
            json!({"name": "k", "environment": "live", "rate_limit": {"requests": 100, "per_seconds": 60}}),
        )
        .await;
    let key_path = format!("/v1/tenants/acme/keys/{id}");
    let invalid = [
        json!({"requests": 0, "per_seconds": 60}),
        json!({"requests": 1_000_001, "per_seconds": 60}),
        json!({"requests": 10, "per_seconds": 0}),
        json!({"requests": 10, "per_seconds": 86_401}),
        json!({"requests": 10, "per_seconds": 60, "burst": 0}),
        json!({"requests": 10, "per_seconds": 60, "burst": 1_000_001}),
        json!({"requests": -1, "per_seconds": 60}),
        json!({"requests": "10", "per_seconds": 60}),
        json!({"requests": 10}),
        json!({"requests": 10, "per_seconds": 60, "window": 1}),
        json!("100/60"),
        json!([100, 60]),
    ];
    for limit in invalid {
        let cases = [
            (
                Method::POST,
                "/v1/tenants".to_owned(),
                json!({"id": "newco", "name": "N", "rate_limit": limit}),
            ),
            (
                Method::PATCH,
                "/v1/tenants/acme".to_owned(),
                json!({"name": "changed", "rate_limit": limit}),
            ),
            (
                Method::POST,
                "/v1/tenants/acme/keys".to_owned(),
                json!({"name": "k2", "environment": "live", "rate_limit": limit}),
            ),
            (
                Method::PATCH,
                key_path.clone(),
                json!({"name": "changed", "rate_limit": limit}),
            ),
        ];
        for (m, path, body) in cases {
            let (st, v) = s.json(m.clone(), &path, &root, Some(body)).await;
            assert_eq!(
                (st, code(&v)),
                (400, "invalid_rate_limit"),
                "{m} {path} {limit}: {v}"
            );
        }
    }
    // Nothing was written.
    let (_, t) = s.json(Method::GET, "/v1/tenants/acme", &root, None).await;
    assert_eq!(
        (&t["name"], &t["rate_limit"]),
        (&json!("Tenant acme"), &Value::Null)
    );
    let (_, k) = s.json(Method::GET, &key_path, &root, None).await;
    assert_eq!(k["name"], "k");
    assert_eq!(k["rate_limit"]["requests"], 100);
    let (_, list) = s
        .json(Method::GET, "/v1/tenants/acme/keys", &root, None)
        .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    let (st, _) = s.json(Method::GET, "/v1/tenants/newco", &root, None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn only_a_root_admin_key_sets_a_tenants_rate_limit() {
    let s = spawn().await;
    s.tenant("acme").await;
    let bound = s
        .admin_key(
            Some("acme"),
            &["tenants:read", "tenants:write", "keys:read", "keys:write"],
        )
        .await;
    for body in [
        json!({"rate_limit": {"requests": 1_000_000, "per_seconds": 1}}),
        json!({"rate_limit": null}),
        json!({"name": "renamed", "rate_limit": {"requests": 1, "per_seconds": 1}}),
    ] {
        let (st, v) = s
            .json(
                Method::PATCH,
                "/v1/tenants/acme",
                &bound,
                Some(body.clone()),
            )
            .await;
        assert_eq!((st, code(&v)), (403, "root_admin_required"), "{body}: {v}");
    }
    let (_, t) = s.json(Method::GET, "/v1/tenants/acme", &bound, None).await;
    assert_eq!(
        (&t["name"], &t["rate_limit"]),
        (&json!("Tenant acme"), &Value::Null)
    );
    // It may still rename its tenant, and give its own keys their limits.
    let (st, _) = s
        .json(
            Method::PATCH,
            "/v1/tenants/acme",
            &bound,
            Some(json!({"name": "Acme"})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, k) = s
        .json(
            Method::POST,
            "/v1/tenants/acme/keys",
            &bound,
            Some(json!({"name": "k", "environment": "test", "rate_limit": {"requests": 50, "per_seconds": 10}})),
        )
        .await;
    assert_eq!(st, 201, "{k}");
    assert_eq!(
        k["key"]["rate_limit"],
        json!({"requests": 50, "per_seconds": 10, "burst": 50})
    );
    // Creating tenants stays root-only, with or without a limit.
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/tenants",
            &bound,
            Some(json!({"id": "newco", "name": "N", "rate_limit": {"requests": 1, "per_seconds": 1}})),
        )
        .await;
    assert_eq!((st, code(&v)), (403, "root_admin_required"));
}
