//! Broken object-level authorisation suite: an admin key bound to tenant A tries every endpoint
//! on tenant B's objects. Each attempt must fail as if B's objects did not exist, and B's objects
//! must be unchanged afterwards.
use portcullis_testkit::spawn;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn a_tenant_bound_admin_key_never_reaches_another_tenant() {
    let s = spawn().await;
    s.tenant("tenant-a").await;
    s.tenant("tenant-b").await;
    let (a_key_id, _) = s
        .key("tenant-a", json!({"name": "a", "environment": "live"}))
        .await;
    let (b_key_id, b_secret) = s
        .key(
            "tenant-b",
            json!({"name": "b", "environment": "live", "scopes": ["x:read"]}),
        )
        .await;
    let all = [
        "tenants:read",
        "tenants:write",
        "keys:read",
        "keys:write",
        "keys:verify",
        "audit:read",
        "events:read",
    ];
    let a_admin = s.admin_key(Some("tenant-a"), &all).await;
    let snapshot = |s: &portcullis_testkit::TestServer| {
        let root = s.root_secret.clone();
        let c = s.client.clone();
        let base = s.url("");
        let bid = b_key_id.clone();
        async move {
            let t: Value = c
                .get(format!("{base}/v1/tenants/tenant-b"))
                .bearer_auth(&root)
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            let k: Value = c
                .get(format!("{base}/v1/tenants/tenant-b/keys/{bid}"))
                .bearer_auth(&root)
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            (t, k)
        }
    };
    let before = snapshot(&s).await;

    let b = "/v1/tenants/tenant-b";
    let bk = format!("{b}/keys/{b_key_id}");
    // The same key id under tenant A's path: ids are not enough to cross over.
    let cross = format!("/v1/tenants/tenant-a/keys/{b_key_id}");
    let attempts: Vec<(Method, String, Option<Value>, u16)> = vec![
        (Method::GET, b.to_owned(), None, 404),
        (
            Method::PATCH,
            b.to_owned(),
            Some(json!({"name": "pwned"})),
            404,
        ),
        (
            Method::PATCH,
            b.to_owned(),
            Some(json!({"status": "suspended"})),
            404,
        ),
        (Method::GET, format!("{b}/keys"), None, 404),
        (Method::GET, format!("{b}/audit"), None, 404),
        (
            Method::GET,
            format!("{b}/audit?kind=change&limit=1000"),
            None,
            404,
        ),
        (
            Method::GET,
            "/v1/tenants/_system/audit".to_owned(),
            None,
            404,
        ),
        (
            Method::GET,
            "/v1/events?tenant=tenant-b".to_owned(),
            None,
            404,
        ),
        (
            Method::GET,
            "/v1/events?tenant=tenant-b&types=key.created".to_owned(),
            None,
            404,
        ),
        (
            Method::POST,
            format!("{b}/keys"),
            Some(json!({"name": "evil", "environment": "live"})),
            404,
        ),
        (Method::GET, bk.clone(), None, 404),
        (
            Method::PATCH,
            bk.clone(),
            Some(json!({"scopes": ["*:*"]})),
            404,
        ),
        (
            Method::POST,
            format!("{bk}/roll"),
            Some(json!({"grace_seconds": 0})),
            404,
        ),
        (Method::POST, format!("{bk}/revoke"), None, 404),
        (Method::GET, cross.clone(), None, 404),
        (
            Method::PATCH,
            cross.clone(),
            Some(json!({"name": "x"})),
            404,
        ),
        (Method::POST, format!("{cross}/roll"), None, 404),
        (Method::POST, format!("{cross}/revoke"), None, 404),
        (
            Method::POST,
            "/v1/tenants".to_owned(),
            Some(json!({"id": "tenant-c", "name": "C"})),
            403,
        ),
        (
            Method::POST,
            "/v1/verify".to_owned(),
            Some(json!({"key": b_secret, "tenant": "tenant-b"})),
            404,
        ),
    ];
    for (m, path, body, want) in attempts {
        let (st, v) = s.json(m.clone(), &path, &a_admin, body).await;
        assert_eq!(st, want, "{m} {path}: {v}");
        assert!(
            !v.to_string().contains("tenant-b\""),
            "{m} {path} leaked: {v}"
        );
    }
    // Verify without a tenant: B's key looks unknown to A's admin key.
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/verify",
            &a_admin,
            Some(json!({"key": b_secret})),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (200, Some("NOT_FOUND")), "{v}");
    assert!(v.get("key_id").is_none());
    // Listing tenants shows only A.
    let (_, list) = s.json(Method::GET, "/v1/tenants", &a_admin, None).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["tenant-a"]);
    // X-Tenant-Id naming B is refused outright.
    let r = s
        .client
        .get(s.url("/v1/tenants/tenant-a"))
        .bearer_auth(&a_admin)
        .header("x-tenant-id", "tenant-b")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    // A's own objects work.
    let (st, _) = s
        .json(
            Method::GET,
            &format!("/v1/tenants/tenant-a/keys/{a_key_id}"),
            &a_admin,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .json(
            Method::PATCH,
            "/v1/tenants/tenant-a",
            &a_admin,
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(st, 403, "a bound key cannot change its own tenant's status");
    let (st, _) = s
        .json(
            Method::PATCH,
            "/v1/tenants/tenant-a",
            &a_admin,
            Some(json!({"max_key_lifetime_seconds": null})),
        )
        .await;
    assert_eq!(st, 403, "nor loosen its key lifetime limit");
    let (st, t) = s
        .json(
            Method::PATCH,
            "/v1/tenants/tenant-a",
            &a_admin,
            Some(json!({"name": "A renamed"})),
        )
        .await;
    assert_eq!((st, t["name"].as_str()), (200, Some("A renamed")));
    // A's own audit log answers, and holds nothing of B.
    let (st, log) = s
        .json(
            Method::GET,
            "/v1/tenants/tenant-a/audit?limit=1000",
            &a_admin,
            None,
        )
        .await;
    assert_eq!(st, 200, "{log}");
    assert!(!log["entries"].as_array().expect("entries").is_empty());
    assert!(!log.to_string().contains("tenant-b"), "{log}");
    assert!(!log.to_string().contains(&b_key_id), "{log}");

    // A's event stream, replayed from the start, holds A's events and none of B's: B's key
    // was created between A's two keys, so a leak would arrive before A's second one.
    let (a_second, _) = s
        .key("tenant-a", json!({"name": "a2", "environment": "test"}))
        .await;
    let stream = events_until(&s, &a_admin, &a_second).await;
    assert!(stream.contains(&a_key_id), "{stream}");
    assert!(!stream.contains("tenant-b"), "{stream}");
    assert!(!stream.contains(&b_key_id), "{stream}");
    let r = s
        .client
        .get(s.url("/v1/events"))
        .bearer_auth(&a_admin)
        .header("x-tenant-id", "tenant-b")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);

    let after = snapshot(&s).await;
    assert_eq!(before, after, "tenant B unchanged");
    let v = s.verify(json!({"key": b_secret})).await;
    assert_eq!(v["code"], "VALID", "B's key still works");
}

/// The text of `/v1/events` read with `key` from the first stored event until `key_id` shows up.
async fn events_until(s: &portcullis_testkit::TestServer, key: &str, key_id: &str) -> String {
    let mut resp = s
        .client
        .get(s.url("/v1/events"))
        .bearer_auth(key)
        .header("last-event-id", "0")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    while !text.contains(key_id) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), resp.chunk())
            .await
            .expect("events in time")
            .expect("read")
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// Broken function-level authorisation: an admin key bound to a tenant, holding every admin
/// scope, cannot raise its own tenant's ceilings nor mint or widen a key above them.
#[tokio::test]
async fn a_tenant_bound_admin_key_cannot_raise_its_own_ceilings() {
    let s = spawn().await;
    let ceilings = json!({
        "allowed_scopes": ["invoices:*", "files:read"],
        "max_key_rate_limit": {"requests": 100, "per_seconds": 1, "burst": 20},
    });
    let mut body = json!({"id": "tenant-a", "name": "A"});
    body.as_object_mut()
        .expect("object")
        .extend(ceilings.as_object().expect("object").clone());
    let (st, t) = s
        .json(Method::POST, "/v1/tenants", &s.root_secret, Some(body))
        .await;
    assert_eq!(st, 201, "{t}");
    assert_eq!(t["allowed_scopes"], json!(["files:read", "invoices:*"]));
    assert_eq!(t["max_key_rate_limit"]["requests"], 100);
    let all = ["tenants:read", "tenants:write", "keys:read", "keys:write"];
    let admin = s.admin_key(Some("tenant-a"), &all).await;
    let tenant_before = s
        .json(Method::GET, "/v1/tenants/tenant-a", &admin, None)
        .await;

    // The ceilings themselves: root only.
    for patch in [
        json!({"allowed_scopes": ["*:*"]}),
        json!({"allowed_scopes": null}),
        json!({"max_key_rate_limit": {"requests": 1_000_000, "per_seconds": 1}}),
        json!({"max_key_rate_limit": null}),
        json!({"name": "renamed", "allowed_scopes": ["invoices:*", "admin:*"]}),
    ] {
        let (st, v) = s
            .json(
                Method::PATCH,
                "/v1/tenants/tenant-a",
                &admin,
                Some(patch.clone()),
            )
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (403, Some("root_admin_required")),
            "{patch}"
        );
    }
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/tenants",
            &admin,
            Some(json!({"id": "tenant-z", "name": "Z", "allowed_scopes": ["*:*"]})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("root_admin_required"))
    );
    let tenant_after = s
        .json(Method::GET, "/v1/tenants/tenant-a", &admin, None)
        .await;
    assert_eq!(tenant_before, tenant_after, "ceilings unchanged");

    // Keys above the ceilings: neither minted nor widened.
    let keys = "/v1/tenants/tenant-a/keys";
    let create = |extra: Value| {
        let mut b = json!({"name": "k", "environment": "live"});
        b.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        s.json(Method::POST, keys, &admin, Some(b))
    };
    for (extra, code) in [
        (json!({"scopes": ["*:*"]}), "scope_not_allowed"),
        (json!({"scopes": ["*:read"]}), "scope_not_allowed"),
        (
            json!({"scopes": ["invoices:read", "admin:all"]}),
            "scope_not_allowed",
        ),
        (json!({"scopes": ["files:*"]}), "scope_not_allowed"),
        (
            json!({"rate_limit": {"requests": 1_000_000, "per_seconds": 1}}),
            "rate_limit_above_ceiling",
        ),
        (
            json!({"rate_limit": {"requests": 10, "per_seconds": 1, "burst": 21}}),
            "rate_limit_above_ceiling",
        ),
        (
            json!({"rate_limit": {"requests": 6001, "per_seconds": 60, "burst": 1}}),
            "rate_limit_above_ceiling",
        ),
    ] {
        let (st, v) = create(extra.clone()).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (403, Some(code)),
            "{extra}: {v}"
        );
    }
    let (st, v) = s.json(Method::GET, keys, &admin, None).await;
    assert_eq!(
        (st, v["data"].as_array().map(Vec::len)),
        (200, Some(0)),
        "nothing minted: {v}"
    );

    // Within the ceilings: created, with the ceiling as its limit when it asks for none.
    let (st, v) = create(json!({"scopes": ["invoices:read", "files:read"]})).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["key"]["rate_limit"], t["max_key_rate_limit"]);
    let id = v["key"]["id"].as_str().expect("id").to_owned();
    let key = format!("{keys}/{id}");
    for (patch, code) in [
        (json!({"scopes": ["*:*"]}), "scope_not_allowed"),
        (
            json!({"scopes": ["invoices:*", "billing:read"]}),
            "scope_not_allowed",
        ),
        (
            json!({"rate_limit": {"requests": 1_000_000, "per_seconds": 1}}),
            "rate_limit_above_ceiling",
        ),
        (json!({"rate_limit": null}), "rate_limit_above_ceiling"),
    ] {
        let (st, v) = s
            .json(Method::PATCH, &key, &admin, Some(patch.clone()))
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (403, Some(code)),
            "{patch}: {v}"
        );
    }
    let (st, v) = s
        .json(
            Method::PATCH,
            &key,
            &admin,
            Some(json!({"scopes": ["invoices:*"]})),
        )
        .await;
    assert_eq!(
        (st, v["scopes"].clone()),
        (200, json!(["invoices:*"])),
        "{v}"
    );

    // The root admin lowers the ceilings: the key keeps working, but gets no new secret until
    // it is brought within them.
    let (st, v) = s
        .json(
            Method::PATCH,
            "/v1/tenants/tenant-a",
            &s.root_secret,
            Some(json!({"allowed_scopes": ["invoices:read"]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .json(
            Method::POST,
            &format!("{key}/roll"),
            &admin,
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("scope_not_allowed")),
        "{v}"
    );
    let (st, v) = s
        .json(
            Method::PATCH,
            &key,
            &admin,
            Some(json!({"scopes": ["invoices:read"]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .json(
            Method::POST,
            &format!("{key}/roll"),
            &admin,
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}
