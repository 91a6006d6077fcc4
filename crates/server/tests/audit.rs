//! The audit log of a real server on a real SQLite file: what requests, authentication failures,
//! changes and gateway requests record; the audit API; `fail_closed` and `best_effort` while the
//! audit database cannot be written; the written chains verify.
use std::time::{Duration, Instant};

use portcullis_audit::{Decision, Kind, Record, SYSTEM_CHAIN};
use portcullis_server::{config::AuditMode, gateway::config::GatewayConfig};
use portcullis_store::Store as _;
use portcullis_testkit::{TestServer, spawn, spawn_with};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};

mod support;

fn find<'a>(records: &'a [Record], action: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.action == action).collect()
}

/// The value of a metric line `name value` (0 when absent).
async fn metric(s: &TestServer, name: &str) -> f64 {
    let text = support::gateway::metrics(s).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Every chain of the server's audit database verifies with its signer's public key.
async fn assert_chains_verify(s: &TestServer) {
    s.audit
        .flush_within(Duration::from_secs(30))
        .await
        .expect("flush");
    let store = s.audit.store().expect("enabled");
    let key = s.audit.signer().expect("enabled").verifying_key();
    let reports = portcullis_audit::verify_store(store.as_ref(), &key, None, None, None)
        .await
        .expect("read the store")
        .expect("every chain verifies");
    assert!(!reports.is_empty());
}

#[tokio::test]
async fn api_requests_auth_failures_and_changes_are_recorded() {
    let s = spawn().await;
    s.tenant("acme").await;
    let (id, secret) = s
        .key(
            "acme",
            json!({"name": "billing", "environment": "live", "scopes": ["a:read"]}),
        )
        .await;
    let keys = format!("/v1/tenants/acme/keys/{id}");
    let (st, _) = s
        .json(
            Method::PATCH,
            &keys,
            &s.root_secret,
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, rolled) = s
        .json(Method::POST, &format!("{keys}/roll"), &s.root_secret, None)
        .await;
    assert_eq!(st, 200);
    let new_secret = rolled["secret"].as_str().expect("secret").to_owned();
    let (st, _) = s
        .json(
            Method::POST,
            &format!("{keys}/revoke"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .json(
            Method::PATCH,
            "/v1/tenants/acme",
            &s.root_secret,
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(st, 200);
    // A tenant key on the admin API, and a garbage credential.
    let (st, _) = s.json(Method::GET, "/v1/tenants", &new_secret, None).await;
    assert_eq!(st, 401);
    let (st, _) = s
        .json(Method::GET, "/v1/tenants", "not-a-key-at-all", None)
        .await;
    assert_eq!(st, 401);

    let root_id = s.store.list_admin_keys().await.expect("admin keys")[0]
        .id
        .clone();
    let acme = s.audit_records("acme").await;
    let system = s.audit_records(SYSTEM_CHAIN).await;
    let all_bodies = format!("{acme:?}{system:?}");
    for secret in [&secret, &new_secret, &s.root_secret] {
        let body = &secret[secret.rfind('_').expect("underscore") + 1..];
        assert!(!all_bodies.contains(body), "a secret is in the audit log");
    }

    // Changes: actor, target, before / after without secrets.
    let create = find(&acme, "tenant.create");
    assert_eq!(create.len(), 1);
    assert_eq!(create[0].actor.as_deref(), Some(root_id.as_str()));
    assert_eq!(create[0].kind, Kind::Change);
    assert_eq!(create[0].data["after"]["id"], "acme");
    let kc = find(&acme, "key.create");
    assert_eq!(kc[0].key_id.as_deref(), Some(id.as_str()));
    assert_eq!(kc[0].data["after"]["name"], "billing");
    assert!(kc[0].data["after"].get("secret").is_none());
    assert!(kc[0].data["after"]["hint"].as_str().is_some());
    let ku = find(&acme, "key.update");
    assert_eq!(ku[0].data["before"]["name"], "billing");
    assert_eq!(ku[0].data["after"]["name"], "renamed");
    let roll = find(&acme, "key.roll");
    assert_ne!(
        roll[0].data["before"]["hint"], roll[0].data["after"]["hint"],
        "the roll changed the hint"
    );
    assert!(roll[0].data["after"]["previous_secret_expires_at"].is_string());
    let revoke = find(&acme, "key.revoke");
    assert!(revoke[0].data["before"]["revoked_at"].is_null());
    assert!(revoke[0].data["after"]["revoked_at"].is_string());
    let tu = find(&acme, "tenant.update");
    assert_eq!(
        (
            &tu[0].data["before"]["status"],
            &tu[0].data["after"]["status"]
        ),
        (&json!("active"), &json!("suspended"))
    );
    // The bootstrap root key is a change of the system chain.
    let boot = find(&system, "admin_key.create");
    assert_eq!(boot[0].actor.as_deref(), Some("bootstrap"));

    // Requests: one record each, with route template, status, decision, actor.
    let created = acme
        .iter()
        .find(|r| r.action == "request" && r.data["route"] == "/v1/tenants/{tenant}/keys")
        .expect("request record of the key creation");
    assert_eq!(created.kind, Kind::Request);
    assert_eq!(created.actor.as_deref(), Some(root_id.as_str()));
    assert_eq!(created.data["method"], "POST");
    assert_eq!(created.data["status"], 201);
    assert_eq!(created.data["auth"], "success");
    assert_eq!(created.data["client_ip"], "127.0.0.1");
    assert!(created.data["latency_us"].as_u64().is_some());
    assert!(created.data["bytes_in"].as_u64().is_some_and(|n| n > 0));
    assert!(created.data["bytes_out"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(created.decision, Some(Decision::Allow));
    assert!(created.request_id.as_deref().is_some_and(|r| !r.is_empty()));
    assert_eq!(
        kc[0].request_id, created.request_id,
        "change and request linked"
    );

    // Authentication failures: a record of their own, with the hint and the precise reason.
    let failed = find(&acme, "auth.failure");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].kind, Kind::Auth);
    assert_eq!(failed[0].reason.as_deref(), Some("not_an_admin_key"));
    assert_eq!(failed[0].decision, Some(Decision::Deny));
    let hint = portcullis_core::key::hint(&new_secret).expect("hint");
    assert_eq!(failed[0].data["key_hint"], hint.as_str());
    let garbage = find(&system, "auth.failure");
    assert_eq!(garbage[0].reason.as_deref(), Some("unknown_or_malformed"));
    assert!(garbage[0].data["key_hint"].is_null());
    let refused = system
        .iter()
        .find(|r| r.action == "request" && r.data["status"] == 401)
        .expect("request record of the refused call");
    assert_eq!(refused.reason.as_deref(), Some("invalid_api_key"));
    assert_eq!(refused.decision, Some(Decision::Deny));

    let written = metric(&s, "portcullis_audit_records_written_total").await;
    assert!(written >= (acme.len() + system.len()) as f64, "{written}");
    assert_chains_verify(&s).await;
}

#[tokio::test]
async fn admin_client_address_honours_trusted_proxies() {
    for (trusted, want) in [
        (vec!["127.0.0.1/32".to_owned()], "198.51.100.7"),
        (Vec::new(), "127.0.0.1"),
    ] {
        let s = spawn_with(|c| c.trusted_proxies = trusted.clone()).await;
        let resp = s
            .client
            .get(s.url("/v1/tenants"))
            .bearer_auth(&s.root_secret)
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.7")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let system = s.audit_records(SYSTEM_CHAIN).await;
        let listed = system
            .iter()
            .find(|r| r.action == "request" && r.data["route"] == "/v1/tenants")
            .expect("request record");
        assert_eq!(
            listed.data["client_ip"], want,
            "trusted_proxies = {trusted:?}: the right-most untrusted entry, or the peer"
        );
    }
}

fn gateway(upstream: std::net::SocketAddr) -> GatewayConfig {
    let mut g = support::gateway::config(format!("http://{upstream}"), 5_000);
    let mut files = support::gateway::route("files", "/files", "main");
    files.upload = true;
    g.routes.push(files);
    let mut admin = support::gateway::route("admin", "/admin", "main");
    admin.scopes = vec!["admin:write".into()];
    g.routes.push(admin);
    g
}

#[tokio::test]
async fn gateway_requests_and_uploads_are_recorded() {
    let up = support::upstream::start().await;
    let s = spawn_with(|c| {
        c.gateway = gateway(up.addr);
        c.audit.client_ip = portcullis_server::config::ClientIpMode::Pseudonymise;
    })
    .await;
    s.tenant("acme").await;
    let (id, secret) = s
        .key("acme", json!({"name": "k", "environment": "test"}))
        .await;
    let (revoked_id, revoked) = s
        .key("acme", json!({"name": "old", "environment": "live"}))
        .await;
    s.json(
        Method::POST,
        &format!("/v1/tenants/acme/keys/{revoked_id}/revoke"),
        &s.root_secret,
        None,
    )
    .await;
    let gw = |path: &str| s.client.post(s.gateway_url(path));
    let body = "hello upload";
    let r = gw("/files/a.txt")
        .bearer_auth(&secret)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(
        gw("/admin/x")
            .bearer_auth(&secret)
            .send()
            .await
            .expect("send")
            .status(),
        403
    );
    assert_eq!(
        gw("/files/b")
            .bearer_auth(&revoked)
            .send()
            .await
            .expect("send")
            .status(),
        401
    );

    let acme = s.audit_records("acme").await;
    let requests = find(&acme, "gateway.request");
    assert_eq!(requests.len(), 2, "{requests:?}");
    let ok = requests[0];
    assert_eq!(ok.key_id.as_deref(), Some(id.as_str()));
    assert_eq!(ok.decision, Some(Decision::Allow));
    assert_eq!(ok.data["route"], "files");
    assert_eq!(ok.data["path"], "/files/a.txt");
    assert_eq!(ok.data["status"], 200);
    assert_eq!(ok.data["environment"], "test");
    assert_eq!(ok.data["bytes_in"], body.len());
    let pseudonym = ok.data["client_ip"].as_str().expect("client ip");
    assert!(pseudonym.starts_with("ip_"), "{pseudonym}");
    let text = serde_json::to_string(ok).expect("json");
    assert!(!text.contains("127.0.0.1"), "pseudonymised: {text}");
    let forbidden = requests[1];
    assert_eq!(forbidden.decision, Some(Decision::Deny));
    assert_eq!(forbidden.reason.as_deref(), Some("insufficient_scope"));
    assert_eq!(forbidden.data["status"], 403);
    assert_eq!(forbidden.data["route"], "admin");
    assert_eq!(forbidden.data["client_ip"], pseudonym, "stable per tenant");
    // The revoked key is no valid credential: its refusal is counted in an aggregate of its
    // tenant's chain, with the key's id.
    assert!(find(&acme, "auth.failure").is_empty());
    let refused = find(&acme, "gateway.refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].kind, Kind::Auth);
    assert_eq!(refused[0].reason.as_deref(), Some("revoked"));
    assert_eq!(refused[0].key_id.as_deref(), Some(revoked_id.as_str()));
    assert_eq!(refused[0].data["count"], 1);
    assert_eq!(refused[0].data["route"], "files");
    assert_eq!(refused[0].data["sample_path"], "/files/b");
    assert_eq!(refused[0].data["client_ip"], pseudonym, "stable per tenant");
    // Upload facts, with the same request id as the request.
    let uploads = find(&acme, "gateway.upload");
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let u = uploads[0];
    assert_eq!(u.request_id, ok.request_id);
    assert_eq!(u.data["bytes"], body.len());
    assert_eq!(u.data["content_type"], "text/plain");
    assert_eq!(u.data["complete"], true);
    use sha2::Digest as _;
    assert_eq!(
        u.data["sha256"],
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    );
    let all = format!("{acme:?}");
    for secret in [&secret, &revoked] {
        assert!(!all.contains(&secret[secret.len() - 20..]), "no secret");
    }
    assert_chains_verify(&s).await;
}

#[tokio::test]
async fn the_audit_api_filters_pages_and_refuses_bad_parameters() {
    let s = spawn().await;
    s.tenant("acme").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (id, _) = s
            .key(
                "acme",
                json!({"name": format!("k{i}"), "environment": "live"}),
            )
            .await;
        ids.push(id);
    }
    let base = "/v1/tenants/acme/audit";
    let get = |q: String| {
        let s = &s;
        async move {
            s.json(Method::GET, &format!("{base}{q}"), &s.root_secret, None)
                .await
        }
    };
    s.audit.flush().await.expect("flush");
    let (st, page) = get("?action=key.create&limit=2".into()).await;
    assert_eq!(st, 200, "{page}");
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["key_id"], ids[0].as_str());
    assert_eq!(entries[0]["kind"], "change");
    assert_eq!(entries[0]["tenant"], "acme");
    assert_eq!(entries[0]["hash"].as_str().map(str::len), Some(64));
    assert_eq!(entries[1]["prev_hash"].as_str().map(str::len), Some(64));
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, rest) = get(format!("?action=key.create&limit=2&cursor={cursor}")).await;
    let rest = rest["entries"].as_array().expect("entries");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["key_id"], ids[2].as_str());
    let (_, by_key) = get(format!("?key_id={}", ids[1])).await;
    assert!(
        by_key["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["key_id"] == ids[1].as_str())
    );
    // A request's record is queued once its answer is on its way: flush again for the last ones.
    s.audit.flush().await.expect("flush");
    let (_, requests) = get("?kind=request&decision=allow&limit=1000".into()).await;
    let requests = requests["entries"].as_array().expect("entries");
    assert!(requests.len() >= 4, "tenant + key creations");
    assert!(requests.iter().all(|e| e["action"] == "request"));
    // Time window: everything is before an hour from now, nothing is after it.
    let later = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let (_, none) = get(format!("?since={later}")).await;
    assert_eq!(none["entries"], json!([]));
    assert!(none["next_cursor"].is_null());
    let (_, some) = get(format!("?until={later}&action=tenant.create")).await;
    assert_eq!(some["entries"].as_array().map(Vec::len), Some(1));

    for (q, code) in [
        ("?limit=0", "invalid_limit"),
        ("?limit=1001", "invalid_limit"),
        ("?cursor=abc", "invalid_cursor"),
        ("?since=yesterday", "invalid_query"),
        ("?kind=everything", "invalid_query"),
        ("?decision=maybe", "invalid_query"),
        ("?unknown=1", "invalid_query"),
        ("?action=a%20b", "invalid_query"),
    ] {
        let (st, v) = get(q.into()).await;
        assert_eq!((st, v["error"]["code"].as_str()), (400, Some(code)), "{q}");
    }
    let (st, _) = s
        .json(Method::GET, "/v1/tenants/nope/audit", &s.root_secret, None)
        .await;
    assert_eq!(st, 404);
    let reader = s.admin_key(None, &["keys:read"]).await;
    let (st, v) = s.json(Method::GET, base, &reader, None).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
}

/// Holds the audit database's write lock (a `BEGIN IMMEDIATE` transaction of another
/// connection), so the server's appends fail after SQLite's busy timeout.
async fn lock(path: &std::path::Path) -> SqliteConnection {
    let mut c = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the audit database");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut c)
        .await
        .expect("take the write lock");
    c
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn fail_closed_refuses_while_the_store_cannot_be_written_and_recovers() {
    let up = support::upstream::start().await;
    let s = spawn_with(|c| c.gateway = gateway(up.addr)).await;
    s.tenant("acme").await;
    let (_, secret) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    s.audit.flush().await.expect("flush");
    let mut locked = lock(&s.audit_path).await;
    // The records of this request cannot be written: the writer fails after the busy timeout.
    let (st, _) = s
        .json(Method::GET, "/v1/tenants/acme", &s.root_secret, None)
        .await;
    assert_eq!(st, 200);
    eventually("requests refused", || async {
        let (st, v) = s
            .json(Method::GET, "/v1/tenants/acme", &s.root_secret, None)
            .await;
        st == 503 && v["error"]["code"] == "audit_unavailable"
    })
    .await;
    let r = s
        .client
        .get(s.gateway_url("/files/x"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503, "the gateway refuses too");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "audit_unavailable");
    assert!(
        support::gateway::metrics(&s)
            .await
            .contains("decision=\"audit_unavailable\"")
    );
    let health = s.client.get(s.url("/healthz")).send().await.expect("send");
    assert_eq!(health.status(), 200, "health answers");
    let ready = s.client.get(s.url("/readyz")).send().await.expect("send");
    assert_eq!(ready.status(), 503, "not ready while refusing");
    assert_eq!(metric(&s, "portcullis_audit_healthy").await, 0.0);
    assert!(metric(&s, "portcullis_audit_write_failures_total").await >= 1.0);
    assert!(!s.audit.healthy());

    sqlx::query("ROLLBACK")
        .execute(&mut locked)
        .await
        .expect("release");
    drop(locked);
    eventually("requests served again", || async {
        let (st, _) = s
            .json(Method::GET, "/v1/tenants/acme", &s.root_secret, None)
            .await;
        st == 200
    })
    .await;
    assert_eq!(metric(&s, "portcullis_audit_healthy").await, 1.0);
    let ready = s.client.get(s.url("/readyz")).send().await.expect("send");
    assert_eq!(ready.status(), 200, "ready again");
    // The record queued while the store failed was kept and written.
    let acme = s.audit_records("acme").await;
    let reads = acme
        .iter()
        .filter(|r| {
            r.action == "request"
                && r.data["route"] == "/v1/tenants/{tenant}"
                && r.data["status"] == 200
        })
        .count();
    assert!(reads >= 2, "{reads}");
    assert_chains_verify(&s).await;
}

#[tokio::test]
async fn best_effort_keeps_serving_and_counts_drops() {
    let capture = support::Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = spawn_with(|c| {
        c.audit.mode = AuditMode::BestEffort;
        c.audit.queue_capacity = 2;
        c.audit.batch_max = 1;
    })
    .await;
    s.tenant("acme").await;
    s.audit.flush().await.expect("flush");
    let mut locked = lock(&s.audit_path).await;
    for _ in 0..20 {
        let (st, _) = s
            .json(Method::GET, "/v1/tenants/acme", &s.root_secret, None)
            .await;
        assert_eq!(st, 200, "best_effort keeps serving");
    }
    let dropped = metric(&s, "portcullis_audit_records_dropped_total").await;
    assert!(dropped >= 10.0, "{dropped}");
    sqlx::query("ROLLBACK")
        .execute(&mut locked)
        .await
        .expect("release");
    drop(locked);
    s.audit
        .flush_within(Duration::from_secs(30))
        .await
        .expect("written after the lock is gone");
    assert!(s.audit.healthy());
    assert_chains_verify(&s).await;
    let logs = capture.text();
    assert_eq!(
        logs.matches("audit log degraded").count(),
        1,
        "one line per episode, not per record: {logs}"
    );
    assert_eq!(logs.matches("audit log recovered").count(), 1, "{logs}");
    // The episode (shorter than a second here) is told as two `audit.degraded` events of no
    // tenant: its start and its end.
    let backend = s.state.events.backend().expect("events enabled");
    let states = || async {
        backend
            .read_after(0, &portcullis_events::Scope::global(), 1_000)
            .await
            .expect("read events")
            .into_iter()
            .filter(|e| e.kind == portcullis_events::EventType::AuditDegraded)
            .map(|e| {
                assert_eq!(e.tenant, None);
                assert_eq!(e.data["mode"], "best_effort");
                e.data["state"].as_str().unwrap_or_default().to_owned()
            })
            .collect::<Vec<_>>()
    };
    eventually("both audit.degraded events", || async {
        states().await.len() >= 2
    })
    .await;
    let states = states().await;
    assert_eq!(states, ["degraded", "recovered"]);
}

#[tokio::test]
async fn a_disabled_audit_log_records_nothing_and_answers_so() {
    let s = spawn_with(|c| c.audit.enabled = false).await;
    s.tenant("acme").await;
    assert!(s.audit.store().is_none());
    let (st, v) = s
        .json(Method::GET, "/v1/tenants/acme/audit", &s.root_secret, None)
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("audit_unavailable"))
    );
    assert!(!s.audit_path.exists());
}

#[tokio::test]
async fn retention_purges_old_entries_and_what_is_kept_verifies() {
    let s = spawn_with(|c| {
        c.audit.tenant_retention_days.insert("acme".into(), 1);
    })
    .await;
    s.tenant("acme").await;
    s.tenant("beta").await;
    for i in 0..3 {
        s.key(
            "acme",
            json!({"name": format!("k{i}"), "environment": "live"}),
        )
        .await;
    }
    let old = s.audit_records("acme").await.len();
    s.clock.advance(time::Duration::days(2));
    s.key("acme", json!({"name": "new", "environment": "live"}))
        .await;
    s.audit.flush().await.expect("flush");
    let config = s.audit.config().expect("enabled").clone();
    let purged =
        portcullis_server::audit::retention::purge_once(&s.audit, &config, s.clock.as_ref()).await;
    assert_eq!(purged.len(), 1, "only acme is past its window: {purged:?}");
    assert_eq!(
        (purged[0].chain.as_str(), purged[0].removed),
        ("acme", old as u64)
    );
    let kept = s.audit_records("acme").await;
    assert!(
        kept.iter()
            .any(|r| r.data.get("after").is_some_and(|a| a["name"] == "new"))
    );
    assert!(
        !kept.iter().any(|r| r.action == "tenant.create"),
        "old entries are gone"
    );
    let purge = find(&kept, "audit.purge");
    assert_eq!(purge.len(), 1);
    assert_eq!(purge[0].kind, Kind::Maintenance);
    assert_eq!(purge[0].data["removed"], old);
    assert_eq!(
        find(&s.audit_records("beta").await, "tenant.create").len(),
        1
    );
    assert_chains_verify(&s).await;
    // Nothing more to purge right after.
    assert!(
        portcullis_server::audit::retention::purge_once(&s.audit, &config, s.clock.as_ref())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn chains_get_signed_checkpoints_by_count_and_by_time() {
    let s = spawn_with(|c| {
        c.audit.checkpoint_every_records = 3;
        c.audit.checkpoint_every_seconds = 1;
    })
    .await;
    s.tenant("acme").await;
    for i in 0..4 {
        s.key(
            "acme",
            json!({"name": format!("k{i}"), "environment": "live"}),
        )
        .await;
    }
    s.audit.flush().await.expect("flush");
    let store = s.audit.store().expect("enabled");
    let key = s.audit.signer().expect("enabled").verifying_key();
    let acme = store.checkpoints("acme").await.expect("checkpoints");
    assert!(!acme.is_empty(), "by count");
    assert!(acme.iter().all(|c| c.verify(&key)));
    assert!(acme.windows(2).all(|w| w[0].seq < w[1].seq));
    // A chain with fewer records than the count is signed once its time has come.
    s.tenant("beta").await;
    s.audit.flush().await.expect("flush");
    let started = Instant::now();
    loop {
        let beta = store.checkpoints("beta").await.expect("checkpoints");
        if let Some(last) = beta.last() {
            let head = store
                .heads()
                .await
                .expect("heads")
                .into_iter()
                .find(|(c, _)| c == "beta")
                .expect("beta head")
                .1;
            assert_eq!((last.seq, last.hash), (head.seq, head.hash));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "by time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric(&s, "portcullis_audit_checkpoints_written_total").await >= 2.0);
    assert_chains_verify(&s).await;
}

#[tokio::test]
async fn gateway_configuration_reloads_are_recorded() {
    let up = support::upstream::start().await;
    let s = spawn_with(|c| c.gateway = gateway(up.addr)).await;
    let gw = s.gateway.clone().expect("gateway");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("portcullis.toml");
    let good = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\n[gateway.upstreams.main]\nurl = \"http://{}\"\n[[gateway.routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"main\"\n",
        up.addr
    );
    std::fs::write(&file, &good).expect("write");
    portcullis_server::serve::reload_gateway(&gw, Some(&file)).expect("valid");
    std::fs::write(&file, "[gateway]\nroutes = 5\n").expect("write");
    assert!(portcullis_server::serve::reload_gateway(&gw, Some(&file)).is_err());

    let system = s.audit_records(SYSTEM_CHAIN).await;
    let reloads = find(&system, "config.reload");
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    use sha2::Digest as _;
    let (ok, refused) = (reloads[0], reloads[1]);
    assert_eq!(ok.kind, Kind::Change);
    assert_eq!(ok.data["result"], "ok");
    assert_eq!(ok.decision, Some(Decision::Allow));
    assert_eq!(ok.data["config_file"], file.display().to_string());
    assert_eq!(
        ok.data["sha256"],
        hex::encode(sha2::Sha256::digest(good.as_bytes()))
    );
    assert_eq!(refused.data["result"], "refused");
    assert_eq!(refused.decision, Some(Decision::Deny));
    assert_eq!(
        refused.data["sha256"],
        hex::encode(sha2::Sha256::digest(b"[gateway]\nroutes = 5\n"))
    );
}
