//! Collects every log line of a whole run and every stored row, and finds no key secret in them.
use portcullis_server::gateway::config::GatewayConfig;
use portcullis_testkit::spawn_with;
use reqwest::Method;
use serde_json::json;

mod support;

/// A gateway with one upload route in front of a real upstream.
fn gateway(upstream: std::net::SocketAddr) -> GatewayConfig {
    let mut g = support::gateway::config(format!("http://{upstream}"), 5_000);
    let mut files = support::gateway::route("files", "/", "main");
    files.scopes = vec!["a:read".into()];
    files.upload = true;
    g.routes.push(files);
    g
}

/// Every row of every table of the audit database, as text (read with a connection of its own,
/// not through the store's API, so nothing is left out).
async fn audit_rows(s: &portcullis_testkit::TestServer) -> String {
    s.audit
        .flush_within(std::time::Duration::from_secs(30))
        .await
        .expect("flush");
    sqlite_rows(&s.audit_path).await
}

/// Every row of every table of the SQLite database at `path`, as text (audit blocks
/// decompressed).
async fn sqlite_rows(path: &std::path::Path) -> String {
    use sqlx::{Column, Connection, Row, ValueRef};
    let url = format!("sqlite://{}?mode=ro", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.expect("open");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables");
    let mut out = String::new();
    for t in tables {
        let rows = sqlx::query(&format!("SELECT * FROM \"{t}\""))
            .fetch_all(&mut c)
            .await
            .expect("rows");
        for row in rows {
            for (i, col) in row.columns().iter().enumerate() {
                let raw = row.try_get_raw(i).expect("column");
                if raw.is_null() {
                    continue;
                }
                let text = row
                    .try_get::<String, _>(i)
                    .ok()
                    .or_else(|| row.try_get::<i64, _>(i).ok().map(|n| n.to_string()))
                    .or_else(|| {
                        row.try_get::<Vec<u8>, _>(i).ok().map(|b| {
                            // Audit blocks are stored compressed: read what they hold.
                            let b = if t == "audit_blocks" && col.name() == "data" {
                                portcullis_sqlite::audit::unpack_block(&b)
                                    .expect("an audit block decompresses")
                                    .into_owned()
                            } else {
                                b
                            };
                            String::from_utf8_lossy(&b).into_owned()
                        })
                    })
                    .unwrap_or_default();
                out.push_str(col.name());
                out.push('=');
                out.push_str(&text);
                out.push('\n');
            }
        }
    }
    out
}

#[tokio::test]
async fn no_secret_in_logs_or_rows() {
    let capture = support::Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let up = support::upstream::start().await;
    let s = spawn_with(|c| c.gateway = gateway(up.addr)).await;
    let mut secrets = vec![s.root_secret.clone()];
    s.tenant("acme").await;
    let (id, k1) = s
        .key(
            "acme",
            json!({"name": "k", "environment": "live", "scopes": ["a:read"]}),
        )
        .await;
    secrets.push(k1.clone());
    s.verify(json!({"key": k1, "scopes": ["a:read"]})).await;
    s.verify(json!({"key": k1, "scopes": ["b:read"]})).await;
    let (_, r) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{id}/roll"),
            &s.root_secret,
            None,
        )
        .await;
    let k2 = r["secret"].as_str().expect("secret").to_owned();
    secrets.push(k2.clone());
    s.verify(json!({"key": k2})).await;
    // Through the gateway: a good call with an upload, a wrong key, a key in the URL, the old
    // secret in its grace period.
    let gw = |path: &str| s.client.post(s.gateway_url(path));
    for (req, want) in [
        (gw("/upload").bearer_auth(&k2).body("some bytes"), 200),
        (gw("/upload").bearer_auth(format!("{k2}x")), 401),
        (gw(&format!("/upload?key={k2}")), 400),
        (gw("/upload").header("x-api-key", &k1), 200),
    ] {
        assert_eq!(req.send().await.expect("send").status(), want);
    }
    s.json(
        Method::POST,
        &format!("/v1/tenants/acme/keys/{id}/revoke"),
        &s.root_secret,
        None,
    )
    .await;
    s.verify(json!({"key": k2})).await;
    assert_eq!(
        gw("/upload")
            .bearer_auth(&k2)
            .send()
            .await
            .expect("send")
            .status(),
        401,
        "revoked"
    );
    // Misuse: keys in the URL, in the wrong field, as a credential that is not an admin key.
    s.client
        .get(s.url(&format!("/v1/tenants?api_key={k1}")))
        .send()
        .await
        .expect("send");
    s.json(
        Method::POST,
        "/v1/tenants",
        &s.root_secret,
        Some(json!({"id": k1, "name": k2})),
    )
    .await;
    s.json(
        Method::POST,
        "/v1/tenants",
        &s.root_secret,
        Some(json!({k1.as_str(): 1})),
    )
    .await;
    s.json(Method::GET, "/v1/tenants", &k1, None).await;
    let admin = s.admin_key(Some("acme"), &["keys:read"]).await;
    secrets.push(admin.clone());
    s.json(Method::GET, "/v1/tenants/acme/keys", &admin, None)
        .await;
    s.json(
        Method::GET,
        "/v1/tenants/acme/keys",
        &format!("{admin}x"),
        None,
    )
    .await;
    s.state
        .usage
        .flush(s.state.store.as_ref(), &s.state.metrics)
        .await;
    let rows = s.store.dump_all_rows().await.expect("dump");
    let audit_rows = audit_rows(&s).await;
    let event_rows = sqlite_rows(&s.config.events_database()).await;
    let store = s.store.clone();
    s.shutdown().await;
    drop(_guard);

    let logs = capture.text();
    assert!(logs.contains("key created"), "logs were captured");
    assert!(
        logs.contains("upload measured"),
        "gateway logs were captured"
    );
    assert!(logs.contains("gateway authentication failed"));
    assert!(rows.contains(&id), "rows were dumped");
    assert!(audit_rows.contains(&id), "audit rows were read");
    assert!(audit_rows.contains("auth.failure") && audit_rows.contains("gateway.upload"));
    assert!(
        event_rows.contains("key.rolled") && event_rows.contains(&id),
        "event rows were read"
    );
    for secret in &secrets {
        // The random part alone must not appear either (e.g. with a changed prefix).
        let body = &secret[secret.rfind('_').expect("underscore") + 1..];
        assert!(!logs.contains(body), "a secret is in the logs");
        assert!(!rows.contains(body), "a secret is in the stored rows");
        assert!(
            !audit_rows.contains(body),
            "a secret is in the audit database"
        );
        assert!(
            !event_rows.contains(body),
            "a secret is in the events database"
        );
    }
    drop(store);
}
