//! `/v1/admin-keys` over real HTTP: a root admin key lists, creates and revokes admin keys; a
//! tenant-bound one cannot; nobody grants or revokes more than it holds; the secret is shown
//! once, never cached, never recorded.
use portcullis_store::Store;
use portcullis_testkit::spawn;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_admin_lists_creates_and_revokes_admin_keys() {
    let s = spawn().await;
    s.tenant("acme").await;
    let root = s.root_secret.clone();

    let (st, v) = s.json(Method::GET, "/v1/admin-keys", &root, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(v["data"][0]["tenant_id"].is_null());
    assert!(v["data"][0].get("hash").is_none() && v["data"][0].get("secret").is_none());

    let resp = s
        .call(
            Method::POST,
            "/v1/admin-keys",
            &root,
            Some(json!({"name": "ci", "tenant_id": "acme", "scopes": ["keys:read"]})),
        )
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let created: serde_json::Value = resp.json().await.expect("json");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["admin_key"]["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("pc_admin_"));
    assert_eq!(created["admin_key"]["tenant_id"], "acme");
    assert_eq!(created["admin_key"]["scopes"], json!(["keys:read"]));
    let (st, _) = s
        .json(Method::GET, "/v1/tenants/acme/keys", &secret, None)
        .await;
    assert_eq!(st, 200, "the new key works");

    let (st, v) = s.json(Method::GET, "/v1/admin-keys", &root, None).await;
    assert_eq!((st, v["data"].as_array().map(Vec::len)), (200, Some(2)));

    let (st, v) = s
        .json(
            Method::POST,
            &format!("/v1/admin-keys/{id}/revoke"),
            &root,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["revoked_at"].is_string());
    let (st, v) = s
        .json(Method::GET, "/v1/tenants/acme/keys", &secret, None)
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );

    // Audited as changes by the root key, and the secret is in no record.
    let records = s.audit_records("acme").await;
    let actions: Vec<_> = records
        .iter()
        .filter(|r| r.action.starts_with("admin_key."))
        .map(|r| (r.action.clone(), r.actor.clone()))
        .collect();
    let root_id = s.store.list_admin_keys().await.expect("list")[0].id.clone();
    assert_eq!(
        actions,
        vec![
            ("admin_key.create".to_owned(), Some(root_id.clone())),
            ("admin_key.revoke".to_owned(), Some(root_id)),
        ]
    );
    let all = format!("{records:?}{:?}", s.audit_records("_system").await);
    assert!(!all.contains(&secret[9..]), "no secret in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_bound_and_narrow_admin_keys_are_refused() {
    let s = spawn().await;
    s.tenant("acme").await;
    let bound = s
        .admin_key(Some("acme"), &["keys:read", "keys:write"])
        .await;
    let narrow = s.admin_key(None, &["keys:read", "keys:write"]).await;
    let root_id = s.store.list_admin_keys().await.expect("list")[0].id.clone();
    let code = |v: &serde_json::Value| v["error"]["code"].as_str().unwrap_or("").to_owned();
    let body = json!({"name": "x", "tenant_id": "acme", "scopes": ["keys:read"]});

    for (method, path, body) in [
        (Method::GET, "/v1/admin-keys".to_owned(), None),
        (
            Method::POST,
            "/v1/admin-keys".to_owned(),
            Some(body.clone()),
        ),
        (
            Method::POST,
            format!("/v1/admin-keys/{root_id}/revoke"),
            None,
        ),
    ] {
        let (st, v) = s.json(method, &path, &bound, body).await;
        assert_eq!(
            (st, code(&v)),
            (403, "root_admin_required".into()),
            "{path}"
        );
    }
    // A root key cannot mint or revoke a key holding more than itself.
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/admin-keys",
            &narrow,
            Some(json!({"name": "x", "scopes": ["tenants:write"]})),
        )
        .await;
    assert_eq!((st, code(&v)), (403, "scope_not_held".into()));
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/admin-keys",
            &narrow,
            Some(json!({"name": "all"})),
        )
        .await;
    assert_eq!(
        (st, code(&v)),
        (403, "scope_not_held".into()),
        "default: every scope"
    );
    let (st, v) = s
        .json(
            Method::POST,
            &format!("/v1/admin-keys/{root_id}/revoke"),
            &narrow,
            None,
        )
        .await;
    assert_eq!((st, code(&v)), (403, "scope_not_held".into()));
    let (st, _) = s
        .json(Method::POST, "/v1/admin-keys", &narrow, Some(body))
        .await;
    assert_eq!(st, 201, "within its own scopes");

    // Unknown and malformed ids, unknown fields, a missing tenant.
    let root = s.root_secret.clone();
    for path in [
        "/v1/admin-keys/adm_00000000000000000000000000/revoke",
        "/v1/admin-keys/nonsense/revoke",
    ] {
        let (st, v) = s.json(Method::POST, path, &root, None).await;
        assert_eq!((st, code(&v)), (404, "not_found".into()), "{path}");
    }
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/admin-keys",
            &root,
            Some(json!({"name": "x", "hash": "00"})),
        )
        .await;
    assert_eq!((st, code(&v)), (400, "invalid_request".into()));
    let (st, _) = s
        .json(
            Method::POST,
            "/v1/admin-keys",
            &root,
            Some(json!({"name": "x", "tenant_id": "nowhere"})),
        )
        .await;
    assert_eq!(st, 404);
}
