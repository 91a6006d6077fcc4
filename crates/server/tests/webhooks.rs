//! Webhooks end to end: a real receiver on 127.0.0.1 that checks every signature with
//! `portcullis_events::webhook::verify` and fails on purpose; retries driven by the server's
//! manual clock (the schedule runs on the injected clock; the worker polls every 20 ms of real
//! time), dead letters and redelivery, secret rolls, the API's checks, and no secret in the
//! audit log or the logs.
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use portcullis_core::{
    SecretString,
    clock::{Clock, ManualClock},
    ids,
};
use portcullis_events::{
    TypeSet,
    webhook::{DEFAULT_TOLERANCE, Endpoint, VerifyError, verify},
};
use portcullis_testkit::{TestServer, spawn_with};
use reqwest::Method;
use serde_json::{Value, json};

mod support;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    signature: String,
    event_id: String,
    event_type: String,
    delivery_id: String,
    user_agent: String,
    content_type: String,
    body: Bytes,
    verified: Result<(), VerifyError>,
    answered: u16,
}

#[derive(Debug)]
struct Inner {
    clock: Arc<ManualClock>,
    secrets: Mutex<Vec<String>>,
    /// Answer 500 to this many more requests.
    fail_next: AtomicUsize,
    /// Answer 500 to every request.
    always_fail: AtomicBool,
    seen: Mutex<Vec<Seen>>,
}

/// A webhook receiver as a customer would write it.
#[derive(Debug, Clone)]
struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn receive(State(r): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = header(&headers, "portcullis-signature");
    let secrets = r.secrets.lock().unwrap().clone();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let now = r.clock.now().unix_timestamp();
    let verified = verify(&signature, &secrets, &body, now, DEFAULT_TOLERANCE);
    let answer = if verified.is_err() {
        StatusCode::BAD_REQUEST
    } else if r.always_fail.load(Ordering::SeqCst)
        || r.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    r.seen.lock().unwrap().push(Seen {
        signature,
        event_id: header(&headers, "portcullis-event-id"),
        event_type: header(&headers, "portcullis-event-type"),
        delivery_id: header(&headers, "portcullis-delivery-id"),
        user_agent: header(&headers, "user-agent"),
        content_type: header(&headers, "content-type"),
        body,
        verified,
        answered: answer.as_u16(),
    });
    answer
}

impl Receiver {
    async fn start(clock: Arc<ManualClock>) -> Self {
        let inner = Arc::new(Inner {
            clock,
            secrets: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
            always_fail: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner }
    }

    fn url(&self) -> String {
        format!("http://{}/hook?token=receiver-own-token", self.addr)
    }

    fn trust(&self, secrets: &[&str]) {
        *self.inner.secrets.lock().unwrap() = secrets.iter().map(|s| (*s).to_owned()).collect();
    }

    fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }
}

/// Waits (real time, 15 s at most) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A server whose webhooks may reach the receivers of these tests, on 127.0.0.1.
async fn server() -> TestServer {
    spawn_with(|c| {
        c.events.webhooks.poll_interval_ms = 20;
        c.events.webhooks.danger_allow_private_webhook_targets = true;
    })
    .await
}

/// Creates an endpoint with the root key; returns (id, secret).
async fn endpoint(s: &TestServer, tenant: &str, body: Value) -> (String, String) {
    let (st, v) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/{tenant}/webhooks"),
            &s.root_secret,
            Some(body),
        )
        .await;
    assert_eq!(st, 201, "create webhook: {v}");
    (
        v["webhook"]["id"].as_str().expect("id").to_owned(),
        v["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn deliveries(s: &TestServer, tenant: &str, id: &str, query: &str) -> Vec<Value> {
    let (st, v) = s
        .json(
            Method::GET,
            &format!("/v1/tenants/{tenant}/webhooks/{id}/deliveries{query}"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["data"].as_array().expect("data").clone()
}

/// The one delivery of endpoint `id` once it has finished `n` attempts.
async fn after_attempts(s: &TestServer, tenant: &str, id: &str, n: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let d = deliveries(s, tenant, id, "").await;
        let last = d.first().cloned().unwrap_or(Value::Null);
        if last["attempts"].as_u64() == Some(n) {
            return last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for attempt {n}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn attempts_in(
    records: &[portcullis_server::audit::Record],
) -> Vec<&portcullis_server::audit::Record> {
    records
        .iter()
        .filter(|r| r.action == "webhook.attempt")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_on_schedule_until_delivered() {
    let s = server().await;
    s.tenant("acme").await;
    let rx = Receiver::start(s.clock.clone()).await;
    let (id, secret) = endpoint(
        &s,
        "acme",
        json!({"url": rx.url(), "types": ["key.created"], "description": "billing"}),
    )
    .await;
    assert!(secret.starts_with("whsec_"));
    rx.trust(&[&secret]);
    rx.inner.fail_next.store(2, Ordering::SeqCst);
    let (key_id, _) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;

    let d = after_attempts(&s, "acme", &id, 1).await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["last_status_code"], 500);
    assert_eq!(d["last_error"], "http_status");
    // The next attempt waits for its time (at most 10 s after the first failure).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.seen().len(), 1, "not retried before it is due");
    s.clock.advance(time::Duration::seconds(10));
    let d = after_attempts(&s, "acme", &id, 2).await;
    assert_eq!(d["status"], "pending");
    s.clock.advance(time::Duration::hours(1));
    let d = after_attempts(&s, "acme", &id, 3).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(d["last_status_code"], 204);
    assert!(d["delivered_at"].is_string());
    assert!(d["next_attempt_at"].is_null());

    let seen = rx.seen();
    assert_eq!(
        seen.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 204]
    );
    for r in &seen {
        assert_eq!(r.verified, Ok(()), "every attempt is signed");
        assert_eq!(r.event_type, "key.created");
        assert_eq!(r.user_agent, "portcullis-webhooks");
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.delivery_id, d["id"].as_str().unwrap());
        assert_eq!(r.body, seen[0].body, "the same body every time");
    }
    let event: Value = serde_json::from_slice(&seen[0].body).expect("json body");
    assert_eq!(event["type"], "key.created");
    assert_eq!(event["tenant"], "acme");
    assert_eq!(event["data"]["key_id"], key_id.as_str());
    assert_eq!(seen[0].event_id, event["id"].to_string());
    assert_eq!(d["event_id"], event["id"]);
    // Each attempt is signed afresh, at its own time.
    assert_ne!(seen[0].signature, seen[2].signature);

    // Types filter: a revocation is not delivered; the next key.created is.
    s.json(
        Method::POST,
        &format!("/v1/tenants/acme/keys/{key_id}/revoke"),
        &s.root_secret,
        None,
    )
    .await;
    s.key("acme", json!({"name": "k2", "environment": "live"}))
        .await;
    until("the second delivery", || async {
        deliveries(&s, "acme", &id, "?status=delivered").await.len() == 2
    })
    .await;
    let all = deliveries(&s, "acme", &id, "").await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|d| d["event_type"] == "key.created"));

    // Every attempt is audited, in the tenant's chain, without secrets or the URL's query.
    let records = s.audit_records("acme").await;
    let attempts = attempts_in(&records);
    assert_eq!(attempts.len(), 4);
    let results: Vec<&str> = attempts
        .iter()
        .map(|r| r.data["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["retry", "retry", "delivered", "delivered"]);
    assert_eq!(attempts[0].data["status_code"], 500);
    assert_eq!(attempts[0].data["attempt"], 1);
    assert_eq!(attempts[2].data["attempt"], 3);
    assert_eq!(attempts[0].data["webhook_id"], id.as_str());
    assert!(attempts[0].data["next_attempt_at"].is_string());
    assert!(attempts[2].data["duration_ms"].is_u64());
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains(&secret), "no secret in the audit log");
    assert!(
        !text.contains("receiver-own-token"),
        "no URL query in the audit log"
    );
    for r in &seen {
        let v1 = r.signature.split("v1=").nth(1).unwrap();
        assert!(!text.contains(v1), "no signature in the audit log");
    }
    assert!(
        records.iter().any(|r| r.action == "webhook.create"),
        "the change is audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_dead_lettered_after_the_window_then_redelivered() {
    let s = server().await;
    s.tenant("acme").await;
    let rx = Receiver::start(s.clock.clone()).await;
    let (id, secret) = endpoint(&s, "acme", json!({"url": rx.url()})).await;
    rx.trust(&[&secret]);
    rx.inner.always_fail.store(true, Ordering::SeqCst);
    s.key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    let start = s.clock.now();
    let mut d = Value::Null;
    for n in 1..=40u64 {
        d = after_attempts(&s, "acme", &id, n).await;
        if d["status"] == "dead" {
            break;
        }
        assert_eq!(d["status"], "pending", "{d}");
        // Every wait is at most an hour (the cap).
        s.clock.advance(time::Duration::hours(1));
    }
    assert_eq!(d["status"], "dead", "{d}");
    // Attempts at 0 h, 1 h, … 24 h: the one at 24 h has no time left in the window.
    assert_eq!(d["attempts"], 25);
    assert_eq!(s.clock.now() - start, time::Duration::hours(24));
    assert!(d["next_attempt_at"].is_null());
    let dead = deliveries(&s, "acme", &id, "?status=dead").await;
    assert_eq!(dead.len(), 1);
    assert!(
        deliveries(&s, "acme", &id, "?status=pending")
            .await
            .is_empty()
    );
    // Nothing more is attempted, however long.
    s.clock.advance(time::Duration::days(3));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.seen().len(), 25);

    // Redeliver: attempted at once (still failing: pending again, with a new window).
    let did = dead[0]["id"].as_str().unwrap().to_owned();
    let redeliver = format!("/v1/tenants/acme/webhooks/{id}/deliveries/{did}/redeliver");
    let (st, v) = s.json(Method::POST, &redeliver, &s.root_secret, None).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["status"], "pending");
    let d = after_attempts(&s, "acme", &id, 26).await;
    assert_eq!(d["status"], "pending");
    let (st, v) = s.json(Method::POST, &redeliver, &s.root_secret, None).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("delivery_pending"))
    );
    // The receiver is fixed: the next retry delivers.
    rx.inner.always_fail.store(false, Ordering::SeqCst);
    s.clock.advance(time::Duration::hours(1));
    let d = after_attempts(&s, "acme", &id, 27).await;
    assert_eq!(d["status"], "delivered");
    assert!(rx.seen().iter().all(|r| r.verified.is_ok()));
    let records = s.audit_records("acme").await;
    assert_eq!(attempts_in(&records).len(), 27);
    assert_eq!(
        attempts_in(&records)[24].data["result"],
        "dead",
        "the 25th attempt gave up"
    );
    assert!(records.iter().any(|r| r.action == "webhook.redeliver"));
}

#[tokio::test]
async fn a_rolled_secret_signs_beside_the_new_one_during_its_overlap() {
    let capture = support::Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = server().await;
    s.tenant("acme").await;
    let rx = Receiver::start(s.clock.clone()).await;
    let (id, old) = endpoint(
        &s,
        "acme",
        json!({"url": rx.url(), "types": ["key.created"]}),
    )
    .await;
    let (st, v) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/webhooks/{id}/roll-secret"),
            &s.root_secret,
            Some(json!({"overlap_seconds": 3600})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let new = v["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(v["previous_secret_expires_at"].is_string());
    assert_eq!(
        v["webhook"]["previous_secret_expires_at"],
        v["previous_secret_expires_at"]
    );
    // A receiver not yet updated still verifies.
    rx.trust(&[&old]);
    s.key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    until("the first delivery", || async { !rx.seen().is_empty() }).await;
    let first = rx.seen()[0].clone();
    assert_eq!(first.verified, Ok(()));
    assert_eq!(first.signature.matches("v1=").count(), 2);
    let now = s.clock.now().unix_timestamp();
    for secret in [&old, &new] {
        assert_eq!(
            verify(
                &first.signature,
                &[secret],
                &first.body,
                now,
                DEFAULT_TOLERANCE
            ),
            Ok(())
        );
    }
    // After the overlap only the new secret signs.
    s.clock.advance(time::Duration::hours(2));
    rx.trust(&[&new]);
    s.key("acme", json!({"name": "k2", "environment": "live"}))
        .await;
    until("the second delivery", || async { rx.seen().len() == 2 }).await;
    let second = rx.seen()[1].clone();
    assert_eq!(second.verified, Ok(()));
    assert_eq!(second.signature.matches("v1=").count(), 1);
    let now = s.clock.now().unix_timestamp();
    assert_eq!(
        verify(
            &second.signature,
            &[&old],
            &second.body,
            now,
            DEFAULT_TOLERANCE
        ),
        Err(VerifyError::Mismatch)
    );
    // Replayed later than the tolerance, it is refused.
    assert_eq!(
        verify(
            &second.signature,
            &[&new],
            &second.body,
            now + 301,
            DEFAULT_TOLERANCE
        ),
        Err(VerifyError::OutsideTolerance)
    );
    // The secret is never shown again.
    let (_, got) = s
        .json(
            Method::GET,
            &format!("/v1/tenants/acme/webhooks/{id}"),
            &s.root_secret,
            None,
        )
        .await;
    let (_, list) = s
        .json(
            Method::GET,
            "/v1/tenants/acme/webhooks",
            &s.root_secret,
            None,
        )
        .await;
    for shown in [&got, &list] {
        let text = shown.to_string();
        assert!(!text.contains(&old) && !text.contains(&new), "{text}");
        assert!(!text.contains("whsec_"), "{text}");
    }
    // Nor written to the logs or the audit log, nor any signature.
    let records = serde_json::to_string(&s.audit_records("acme").await).unwrap();
    let logs = capture.text();
    assert!(logs.contains("webhook delivered"), "the capture works");
    for text in [&records, &logs] {
        assert!(!text.contains(&old) && !text.contains(&new));
        assert!(!text.contains("whsec_"));
        assert!(!text.contains("receiver-own-token"));
        for seen in [&first, &second] {
            for v1 in seen.signature.split("v1=").skip(1) {
                assert!(!text.contains(v1.trim_end_matches(',')));
            }
        }
    }
}

#[tokio::test]
async fn the_api_checks_its_input_and_scopes() {
    let s = spawn_with(|c| {
        c.events.webhooks.poll_interval_ms = 20;
        c.events.webhooks.max_endpoints_per_tenant = 2;
    })
    .await;
    s.tenant("acme").await;
    let base = "/v1/tenants/acme/webhooks";
    let code = |(st, v): (u16, Value)| (st, v["error"]["code"].as_str().unwrap_or("").to_owned());
    let root = s.root_secret.clone();
    let call = |m: Method, path: String, body: Option<Value>| {
        let (s, root) = (&s, root.clone());
        async move { code(s.json(m, &path, &root, body).await) }
    };
    for (body, want) in [
        (
            json!({"url": "http://hooks.example.com/x"}),
            "invalid_webhook_url",
        ),
        (
            json!({"url": "ftp://hooks.example.com/x"}),
            "invalid_webhook_url",
        ),
        (
            json!({"url": "https://u:p@hooks.example.com/x"}),
            "invalid_webhook_url",
        ),
        (json!({"url": "not a url"}), "invalid_webhook_url"),
        (
            json!({"url": format!("https://h.example/{}", "a".repeat(2100))}),
            "invalid_webhook_url",
        ),
        (
            json!({"url": "https://h.example/x", "types": []}),
            "invalid_event_types",
        ),
        (
            json!({"url": "https://h.example/x", "types": ["key.nope"]}),
            "invalid_event_types",
        ),
        (
            json!({"url": "https://h.example/x", "description": "x".repeat(300)}),
            "invalid_description",
        ),
        (
            json!({"url": "https://h.example/x", "secret": "whsec_mine"}),
            "invalid_request",
        ),
        (json!({"types": ["key.created"]}), "invalid_request"),
    ] {
        assert_eq!(
            call(Method::POST, base.into(), Some(body.clone())).await,
            (400, want.to_owned()),
            "{body}"
        );
    }
    let (st, v) = s
        .json(
            Method::POST,
            base,
            &root,
            Some(json!({"url": "https://hooks.example.com/a", "types": ["key.created", "key.revoked"]})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["webhook"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["webhook"]["types"], json!(["key.created", "key.revoked"]));
    assert_eq!(v["webhook"]["enabled"], true);
    assert_eq!(v["webhook"]["tenant"], "acme");
    endpoint(&s, "acme", json!({"url": "https://hooks.example.com/b"})).await;
    assert_eq!(
        call(
            Method::POST,
            base.into(),
            Some(json!({"url": "https://hooks.example.com/c"}))
        )
        .await,
        (409, "too_many_webhooks".into())
    );
    // Paging.
    let (st, page) = s
        .json(Method::GET, &format!("{base}?limit=1"), &root, None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let next = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, page) = s
        .json(
            Method::GET,
            &format!("{base}?limit=1&cursor={next}"),
            &root,
            None,
        )
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_null());
    assert_eq!(
        call(Method::GET, format!("{base}?cursor=nope"), None).await,
        (400, "invalid_cursor".into())
    );
    assert_eq!(
        call(Method::GET, format!("{base}?limit=0"), None).await,
        (400, "invalid_limit".into())
    );
    // Changes.
    let one = format!("{base}/{id}");
    let (st, v) = s
        .json(
            Method::PATCH,
            &one,
            &root,
            Some(json!({"description": "ops", "enabled": false, "types": ["key.rolled"]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["description"].as_str(), v["enabled"].as_bool()),
        (Some("ops"), Some(false))
    );
    assert_eq!(v["types"], json!(["key.rolled"]));
    let (_, v) = s
        .json(
            Method::PATCH,
            &one,
            &root,
            Some(json!({"description": null})),
        )
        .await;
    assert!(v["description"].is_null());
    assert_eq!(v["enabled"], false, "absent fields stay");
    assert_eq!(
        call(
            Method::PATCH,
            one.clone(),
            Some(json!({"url": "http://hooks.example.com/x"}))
        )
        .await,
        (400, "invalid_webhook_url".into())
    );
    assert_eq!(
        call(
            Method::PATCH,
            one.clone(),
            Some(json!({"url": "https://10.0.0.1/x"}))
        )
        .await,
        (400, "webhook_url_not_allowed".into())
    );
    assert_eq!(
        call(Method::PATCH, one.clone(), Some(json!({"secret": "x"}))).await,
        (400, "invalid_request".into())
    );
    assert_eq!(
        call(
            Method::POST,
            format!("{one}/roll-secret"),
            Some(json!({"overlap_seconds": 700000}))
        )
        .await,
        (400, "invalid_overlap".into())
    );
    // An empty body rolls with the default overlap (24 h).
    let (st, v) = s
        .json(Method::POST, &format!("{one}/roll-secret"), &root, None)
        .await;
    assert_eq!(st, 200, "{v}");
    let until = time::OffsetDateTime::parse(
        v["previous_secret_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(until - s.clock.now(), time::Duration::hours(24));
    assert_eq!(
        call(Method::GET, format!("{one}/deliveries?status=lost"), None).await,
        (400, "invalid_query".into())
    );
    assert_eq!(
        call(Method::GET, format!("{one}/deliveries?cursor=whk_x"), None).await,
        (400, "invalid_cursor".into())
    );
    assert_eq!(
        call(
            Method::POST,
            format!("{one}/deliveries/whd_01jf0000000000000000000000/redeliver"),
            None
        )
        .await,
        (404, "not_found".into())
    );
    for path in [
        format!("{base}/nope"),
        format!("{base}/whk_01jf0000000000000000000000"),
    ] {
        assert_eq!(
            call(Method::GET, path, None).await,
            (404, "not_found".into())
        );
    }
    assert_eq!(
        call(Method::GET, "/v1/tenants/ghost/webhooks".into(), None).await,
        (404, "not_found".into())
    );
    // Scopes: read-only keys read, and change nothing.
    let reader = s.admin_key(None, &["webhooks:read"]).await;
    let (st, _) = s.json(Method::GET, &one, &reader, None).await;
    assert_eq!(st, 200);
    let (st, v) = s
        .json(
            Method::POST,
            base,
            &reader,
            Some(json!({"url": "https://h.example/x"})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (st, _) = s.json(Method::DELETE, &one, &reader, None).await;
    assert_eq!(st, 403);
    let keys_only = s.admin_key(None, &["keys:read"]).await;
    let (st, _) = s.json(Method::GET, base, &keys_only, None).await;
    assert_eq!(st, 403);
    // Delete.
    let (st, _) = s.json(Method::DELETE, &one, &root, None).await;
    assert_eq!(st, 204);
    assert_eq!(
        call(Method::GET, one.clone(), None).await,
        (404, "not_found".into())
    );
    assert_eq!(
        call(Method::DELETE, one, None).await,
        (404, "not_found".into())
    );
    // Every change is audited, without a secret.
    let records = s.audit_records("acme").await;
    let actions: Vec<&str> = records
        .iter()
        .filter(|r| r.action.starts_with("webhook."))
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "webhook.create",
            "webhook.create",
            "webhook.update",
            "webhook.update",
            "webhook.roll_secret",
            "webhook.delete"
        ]
    );
    assert!(!serde_json::to_string(&records).unwrap().contains("whsec_"));
}

#[tokio::test]
async fn without_events_there_are_no_webhooks() {
    let s = spawn_with(|c| c.events.enabled = false).await;
    s.tenant("acme").await;
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/tenants/acme/webhooks",
            &s.root_secret,
            Some(json!({"url": "https://h.example/x"})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));
}

/// BOLA: an admin key bound to tenant A, with every scope, tries every webhook endpoint on
/// tenant B's endpoint and delivery (by B's path and by A's path with B's ids). Each attempt
/// fails as if they did not exist, and they are unchanged afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_bound_admin_key_never_reaches_another_tenants_webhooks() {
    let s = server().await;
    s.tenant("tenant-a").await;
    s.tenant("tenant-b").await;
    let rx = Receiver::start(s.clock.clone()).await;
    let (bw, b_secret) = endpoint(&s, "tenant-b", json!({"url": rx.url()})).await;
    rx.trust(&[&b_secret]);
    s.key("tenant-b", json!({"name": "b", "environment": "live"}))
        .await;
    until("B's delivery", || async {
        deliveries(&s, "tenant-b", &bw, "?status=delivered")
            .await
            .len()
            == 1
    })
    .await;
    let bd = deliveries(&s, "tenant-b", &bw, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let all = [
        "tenants:read",
        "tenants:write",
        "keys:read",
        "keys:write",
        "audit:read",
        "webhooks:read",
        "webhooks:write",
    ];
    let a_admin = s.admin_key(Some("tenant-a"), &all).await;
    let snapshot = || async {
        let root = &s.root_secret;
        let one = format!("/v1/tenants/tenant-b/webhooks/{bw}");
        let (_, e) = s.json(Method::GET, &one, root, None).await;
        let (_, d) = s
            .json(Method::GET, &format!("{one}/deliveries"), root, None)
            .await;
        (e, d)
    };
    let before = snapshot().await;
    let mut attempts: Vec<(Method, String, Option<Value>)> = Vec::new();
    for base in ["/v1/tenants/tenant-b", "/v1/tenants/tenant-a"] {
        let one = format!("{base}/webhooks/{bw}");
        attempts.extend([
            (Method::GET, one.clone(), None),
            (
                Method::PATCH,
                one.clone(),
                Some(json!({"url": "https://evil.example/x", "enabled": false})),
            ),
            (Method::DELETE, one.clone(), None),
            (Method::POST, format!("{one}/roll-secret"), None),
            (Method::GET, format!("{one}/deliveries"), None),
            (
                Method::GET,
                format!("{one}/deliveries?status=delivered"),
                None,
            ),
            (
                Method::POST,
                format!("{one}/deliveries/{bd}/redeliver"),
                None,
            ),
        ]);
    }
    attempts.extend([
        (Method::GET, "/v1/tenants/tenant-b/webhooks".into(), None),
        (
            Method::POST,
            "/v1/tenants/tenant-b/webhooks".into(),
            Some(json!({"url": "https://evil.example/x"})),
        ),
    ]);
    for (m, path, body) in attempts {
        let (st, v) = s.json(m.clone(), &path, &a_admin, body).await;
        assert_eq!(st, 404, "{m} {path}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains("tenant-b") && !text.contains("whsec_"),
            "{m} {path} leaked: {v}"
        );
    }
    // A's own webhooks work, and A's list holds nothing of B.
    let (st, v) = s
        .json(
            Method::POST,
            "/v1/tenants/tenant-a/webhooks",
            &a_admin,
            Some(json!({"url": "https://a.example/hook"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, list) = s
        .json(Method::GET, "/v1/tenants/tenant-a/webhooks", &a_admin, None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&bw));
    let r = s
        .client
        .get(s.url("/v1/tenants/tenant-a/webhooks"))
        .bearer_auth(&a_admin)
        .header("x-tenant-id", "tenant-b")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    assert_eq!(
        snapshot().await,
        before,
        "B's webhook and delivery unchanged"
    );
    assert_eq!(rx.seen().len(), 1, "nothing redelivered to B");
}

/// Without `danger_allow_private_webhook_targets`, a URL to the receiver on 127.0.0.1 (in any
/// spelling) or to another internal address or name is refused when registered; an endpoint
/// that is stored anyway (by an earlier version, or a node that allowed it) is refused at
/// delivery: no connection reaches the receiver, and the delivery shows the class of the
/// failure, not the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_at_registration_and_at_delivery() {
    let s = spawn_with(|c| c.events.webhooks.poll_interval_ms = 20).await;
    s.tenant("acme").await;
    let rx = Receiver::start(s.clock.clone()).await;
    let port = rx.addr.port();
    let base = "/v1/tenants/acme/webhooks";
    for url in [
        rx.url(),
        format!("http://localhost:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        "https://169.254.169.254/latest/meta-data/".into(),
        "https://metadata.google.internal/computeMetadata/v1/".into(),
        "https://192.168.1.10/hook".into(),
        "https://[fd00::1]/hook".into(),
    ] {
        let (st, v) = s
            .json(
                Method::POST,
                base,
                &s.root_secret,
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (400, Some("webhook_url_not_allowed")),
            "{url}: {v}"
        );
    }
    let (public, _) = endpoint(&s, "acme", json!({"url": "https://hooks.example.com/x"})).await;
    let (st, v) = s
        .json(
            Method::PATCH,
            &format!("{base}/{public}"),
            &s.root_secret,
            Some(json!({"url": rx.url(), "enabled": false})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("webhook_url_not_allowed"))
    );
    s.json(
        Method::DELETE,
        &format!("{base}/{public}"),
        &s.root_secret,
        None,
    )
    .await;

    // Stored without the API's check: the delivery still never reaches the receiver.
    let now = s.clock.now();
    let stored = Endpoint {
        id: ids::new_id("whk"),
        tenant: portcullis_core::tenant::TenantId::parse("acme").unwrap(),
        url: rx.url(),
        description: None,
        types: TypeSet::all(),
        enabled: true,
        created_at: now,
        updated_at: now,
        previous_secret_expires_at: None,
    };
    let secret = SecretString::from("whsec_stored_directly".to_owned());
    s.state
        .events
        .webhooks()
        .expect("webhooks")
        .create_endpoint(&stored, &secret, 20)
        .await
        .unwrap();
    s.key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    let d = after_attempts(&s, "acme", &stored.id, 1).await;
    assert_eq!(d["status"], "pending", "{d}");
    assert_eq!(d["last_error"], "address_not_allowed", "{d}");
    assert!(d["last_status_code"].is_null());
    let text = d.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("refused"),
        "{text}"
    );
    assert!(rx.seen().is_empty(), "the receiver was never reached");
    let records = s.audit_records("acme").await;
    let attempts = attempts_in(&records);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].reason.as_deref(), Some("address_not_allowed"));
}

/// The secret shown once is not what the events database holds; deliveries still sign with
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_secrets_are_sealed_at_rest_and_still_sign() {
    let s = server().await;
    s.tenant("acme").await;
    let rx = Receiver::start(s.clock.clone()).await;
    let (id, secret) = endpoint(&s, "acme", json!({"url": rx.url()})).await;
    rx.trust(&[&secret]);
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        s.config.events_database().display()
    ))
    .await
    .unwrap();
    let (stored,): (String,) = sqlx::query_as("SELECT secret FROM webhook_endpoints WHERE id = ?")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    assert!(!stored.contains(&secret) && !stored.contains("whsec_"));
    let path = s.config.events_database();
    let wal = path.with_extension("sqlite3-wal");
    for file in [&path, &wal] {
        let raw = std::fs::read(file).unwrap_or_default();
        let secret_bytes = secret.as_bytes();
        assert!(
            !raw.windows(secret_bytes.len()).any(|w| w == secret_bytes),
            "the secret is nowhere in {}",
            file.display()
        );
    }
    s.key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    until("the delivery", || async { !rx.seen().is_empty() }).await;
    assert_eq!(rx.seen()[0].verified, Ok(()));
    assert_eq!(rx.seen()[0].answered, 204);
}
