//! Refused traffic cannot fill the disk: gateway refusals of requests without a valid
//! credential are aggregated per client address and reason (one `gateway.refused` record per
//! window, written at the window's end and at shutdown), requests with a valid key keep their
//! own records, and the audit database has a disk budget (`audit.max_bytes`) with a defined
//! behaviour in both modes. Real servers over real HTTP on a real SQLite file.
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, stream};
use portcullis_audit::{Kind, Record, SYSTEM_CHAIN};
use portcullis_server::{config::AuditMode, gateway::config::GatewayConfig};
use portcullis_testkit::{TestServer, spawn_with};
use reqwest::Method;
use serde_json::json;

mod support;

fn gateway(upstream: std::net::SocketAddr) -> GatewayConfig {
    let mut g = support::gateway::config(format!("http://{upstream}"), 5_000);
    let mut files = support::gateway::route("files", "/files", "main");
    files.scopes = vec!["files:read".into()];
    g.routes.push(files);
    g
}

fn find<'a>(records: &'a [Record], action: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.action == action).collect()
}

fn count(records: &[&Record]) -> u64 {
    records
        .iter()
        .map(|r| r.data["count"].as_u64().expect("a count"))
        .sum()
}

/// The value of a metric line `name value` (0 when absent).
async fn metric(s: &TestServer, name: &str) -> f64 {
    let text = support::gateway::metrics(s).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `n` requests to `path` with `key` as bearer credential (none when empty), 16 at a
/// time; returns their statuses.
async fn send(s: &TestServer, n: usize, path: &str, key: &str) -> Vec<u16> {
    stream::iter(0..n)
        .map(|_| async move {
            let mut r = s.client.get(s.gateway_url(path));
            if !key.is_empty() {
                r = r.bearer_auth(key);
            }
            r.send().await.expect("send").status().as_u16()
        })
        .buffer_unordered(16)
        .collect()
        .await
}

#[tokio::test]
async fn five_hundred_bad_credentials_from_one_address_are_a_handful_of_records() {
    let up = support::upstream::start().await;
    let s = spawn_with(|c| c.gateway = gateway(up.addr)).await;
    // A path that holds something shaped like a key (not a valid one: its checksum is wrong,
    // so the URL edge lets it through) must never be a sample.
    let key_like = format!("/files/sk_live_{}", "Q".repeat(38));
    let first = send(&s, 1, &format!("{key_like}?x=1"), "sk_live_nope").await;
    assert_eq!(first, [401]);
    let statuses = send(&s, 499, "/files/report?page=2", "sk_live_nope").await;
    assert!(
        statuses.iter().all(|&st| st == 401 || st == 429),
        "{statuses:?}"
    );
    let missing = send(&s, 50, "/files/report", "").await;
    assert!(missing.iter().all(|&st| st == 401 || st == 429));
    let unrouted = send(&s, 30, "/nowhere/at/all?q=1", "").await;
    assert!(unrouted.iter().all(|&st| st == 404));

    let system = s.audit_records(SYSTEM_CHAIN).await;
    let singles = find(&system, "gateway.request").len() + find(&system, "auth.failure").len();
    assert_eq!(singles, 0, "one record per refused request");
    let refused = find(&system, "gateway.refused");
    // One group per reason: unknown key, blocked address (the brute-force throttle starts after
    // 20 failures; requests without a credential from that address are blocked too), missing
    // credential (if any got through) and no route.
    assert!(refused.len() <= 4, "{refused:?}");
    assert_eq!(count(&refused), 580, "{refused:?}");
    for r in &refused {
        let reason = r.reason.as_deref().unwrap_or_default();
        assert!(
            [
                "unknown_or_malformed",
                "too_many_failed_attempts",
                "missing_credential",
                "route_not_found"
            ]
            .contains(&reason),
            "{r:?}"
        );
    }
    let by = |reason: &str| {
        refused
            .iter()
            .find(|r| r.reason.as_deref() == Some(reason))
            .copied()
            .unwrap_or_else(|| panic!("no {reason} group: {refused:?}"))
    };
    let unknown = by("unknown_or_malformed");
    assert_eq!(unknown.kind, Kind::Auth);
    assert_eq!(unknown.data["client_ip"], "127.0.0.1");
    assert_eq!(unknown.data["route"], "files");
    assert_eq!(unknown.data["status"], 401);
    assert!(unknown.data["sample_path"].is_null(), "{unknown:?}");
    // The threshold (20), and requests in flight when it was reached (16 at a time).
    let failures = unknown.data["count"].as_u64().unwrap_or(0);
    assert!((20..=36).contains(&failures), "{failures}");
    let blocked = by("too_many_failed_attempts");
    assert_eq!(blocked.data["status"], 429);
    let nowhere = by("route_not_found");
    assert_eq!(nowhere.kind, Kind::Request);
    assert_eq!(nowhere.data["count"], 30);
    assert_eq!(nowhere.data["sample_path"], "/nowhere/at/all", "no query");
    assert!(nowhere.data["route"].is_null());
    let first = time::OffsetDateTime::parse(
        nowhere.data["first"].as_str().expect("first"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("a time");
    assert!(first <= nowhere.time);
    let all = format!("{system:?}");
    assert!(!all.contains("QQQQQQQQ") && !all.contains("page="), "{all}");
    assert_eq!(
        metric(&s, "portcullis_audit_refusals_aggregated_total").await,
        580.0
    );
}

#[tokio::test]
async fn refusals_of_a_valid_key_stay_individual_records() {
    let up = support::upstream::start().await;
    let s = spawn_with(|c| {
        c.gateway = gateway(up.addr);
        c.gateway.policies.insert(
            "tight".into(),
            portcullis_server::gateway::config::RateLimitConfig {
                requests: 1,
                per_seconds: 3_600,
                burst: Some(1),
            },
        );
        c.gateway.routes[0].rate_limit = Some("tight".into());
    })
    .await;
    s.tenant("acme").await;
    let (id, no_scope) = s
        .key("acme", json!({"name": "n", "environment": "live"}))
        .await;
    let (_, reader) = s
        .key(
            "acme",
            json!({"name": "r", "environment": "live", "scopes": ["files:read"]}),
        )
        .await;
    assert_eq!(send(&s, 3, "/files/a", &no_scope).await, [403, 403, 403]);
    let mut limited = send(&s, 3, "/files/a", &reader).await;
    limited.sort_unstable();
    assert_eq!(limited, [200, 429, 429]);

    let acme = s.audit_records("acme").await;
    assert!(find(&acme, "gateway.refused").is_empty(), "{acme:?}");
    let requests = find(&acme, "gateway.request");
    assert_eq!(requests.len(), 6, "{requests:?}");
    let forbidden: Vec<_> = requests
        .iter()
        .filter(|r| r.reason.as_deref() == Some("insufficient_scope"))
        .collect();
    assert_eq!(forbidden.len(), 3);
    assert!(
        forbidden
            .iter()
            .all(|r| r.key_id.as_deref() == Some(id.as_str()))
    );
    let rate_limited = requests
        .iter()
        .filter(|r| r.reason.as_deref() == Some("rate_limited"))
        .count();
    assert_eq!(rate_limited, 2);
}

#[tokio::test]
async fn the_window_is_written_at_its_end_and_at_shutdown() {
    let up = support::upstream::start().await;
    let s = spawn_with(|c| {
        c.gateway = gateway(up.addr);
        c.audit.refusal_window_seconds = 1;
    })
    .await;
    let store = s.audit.store().expect("enabled");
    let refused = || {
        let store = store.clone();
        async move {
            let entries = store
                .entries(SYSTEM_CHAIN, 1, None, 1_000)
                .await
                .expect("read");
            entries
                .iter()
                .map(|e| e.record().expect("record"))
                .filter(|r| r.action == "gateway.refused")
                .collect::<Vec<_>>()
        }
    };
    send(&s, 7, "/nowhere", "").await;
    // Nobody flushes: the writer writes the window when it ends.
    eventually("the window's record", || async {
        count(&refused().await.iter().collect::<Vec<_>>()) == 7
    })
    .await;
    s.shutdown().await;

    // A long window (the default minute): only the shutdown writes it.
    let s = spawn_with(|c| c.gateway = gateway(up.addr)).await;
    let store = s.audit.store().expect("enabled");
    send(&s, 9, "/nowhere", "").await;
    s.audit.flush_within(Duration::from_secs(10)).await.ok();
    let before = store
        .entries(SYSTEM_CHAIN, 1, None, 1_000)
        .await
        .expect("read")
        .len();
    send(&s, 11, "/elsewhere", "").await;
    // What the server does at a graceful stop, once the listeners are drained.
    s.audit
        .shutdown(portcullis_server::serve::AUDIT_SHUTDOWN_GRACE)
        .await
        .expect("shutdown");
    let records: Vec<Record> = store
        .entries(SYSTEM_CHAIN, 1, None, 1_000)
        .await
        .expect("read")
        .iter()
        .map(|e| e.record().expect("record"))
        .collect();
    let refused = find(&records, "gateway.refused");
    assert_eq!(count(&refused), 20, "nothing counted is lost: {refused:?}");
    assert!(records.len() > before);
}

#[tokio::test]
async fn at_max_bytes_fail_closed_refuses_and_is_not_ready() {
    let up = support::upstream::start().await;
    let s = spawn_with(|c| {
        c.gateway = gateway(up.addr);
        c.audit.max_bytes = Some(1);
    })
    .await;
    eventually("over budget", || async { s.audit.over_budget() }).await;
    let r = s.client.get(s.url("/readyz")).send().await.expect("readyz");
    assert_eq!(r.status(), 503);
    let r = s
        .client
        .get(s.gateway_url("/files/a"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "audit_unavailable");
    let (st, v) = s
        .json(Method::GET, "/v1/tenants", &s.root_secret, None)
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("audit_unavailable"))
    );
    assert_eq!(metric(&s, "portcullis_audit_over_budget").await, 1.0);
    assert!(metric(&s, "portcullis_audit_store_bytes").await > 1.0);
}

#[tokio::test]
async fn at_max_bytes_best_effort_serves_drops_counts_and_raises_audit_degraded() {
    let up = support::upstream::start().await;
    let s = spawn_with(|c| {
        c.gateway = gateway(up.addr);
        c.audit.mode = AuditMode::BestEffort;
        c.audit.max_bytes = Some(1);
    })
    .await;
    eventually("over budget", || async { s.audit.over_budget() }).await;
    let r = s.client.get(s.url("/readyz")).send().await.expect("readyz");
    assert_eq!(r.status(), 200, "best_effort stays ready");
    s.tenant("acme").await;
    let (_, key) = s
        .key(
            "acme",
            json!({"name": "r", "environment": "live", "scopes": ["files:read"]}),
        )
        .await;
    assert_eq!(send(&s, 3, "/files/a", &key).await, [200, 200, 200]);
    assert_eq!(send(&s, 5, "/nowhere", "").await, [404; 5]);
    s.audit
        .flush_within(Duration::from_secs(10))
        .await
        .expect("flush");
    let written = metric(&s, "portcullis_audit_records_written_total").await;
    assert!(find(&s.audit_records("acme").await, "gateway.request").is_empty());
    assert!(find(&s.audit_records(SYSTEM_CHAIN).await, "gateway.refused").is_empty());
    assert_eq!(
        metric(&s, "portcullis_audit_records_written_total").await,
        written
    );
    // Two admin requests and a change record each, three gateway requests, one aggregate.
    let over = metric(&s, "portcullis_audit_records_dropped_over_budget_total").await;
    assert!(over >= 4.0, "{over}");
    assert!(metric(&s, "portcullis_audit_records_dropped_total").await >= over);
    let backend = s.state.events.backend().expect("events enabled");
    eventually("an audit.degraded event", || async {
        backend
            .read_after(0, &portcullis_events::Scope::global(), 1_000)
            .await
            .expect("read events")
            .iter()
            .any(|e| {
                e.kind == portcullis_events::EventType::AuditDegraded
                    && e.data["state"] == "degraded"
                    && e.data["mode"] == "best_effort"
            })
    })
    .await;
}

/// An audit store whose size is what the test says: the budget's recovery without having to
/// fill and purge real pages.
#[derive(Debug)]
struct Sized {
    inner: portcullis_sqlite::SqliteAuditStore,
    used: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[async_trait::async_trait]
impl portcullis_audit::AuditStore for Sized {
    async fn heads(&self) -> Result<Vec<(String, portcullis_audit::Head)>, StoreError> {
        self.inner.heads().await
    }
    async fn append(
        &self,
        entries: &[portcullis_audit::Entry],
        checkpoints: &[portcullis_audit::Checkpoint],
    ) -> Result<(), StoreError> {
        self.inner.append(entries, checkpoints).await
    }
    async fn chains(&self) -> Result<Vec<String>, StoreError> {
        self.inner.chains().await
    }
    async fn entries(
        &self,
        chain: &str,
        from: u64,
        to: Option<u64>,
        limit: u32,
    ) -> Result<Vec<portcullis_audit::Entry>, StoreError> {
        self.inner.entries(chain, from, to, limit).await
    }
    async fn search(
        &self,
        chain: &str,
        filter: &portcullis_audit::AuditFilter,
        after: u64,
        limit: u32,
    ) -> Result<Vec<portcullis_audit::Entry>, StoreError> {
        self.inner.search(chain, filter, after, limit).await
    }
    async fn checkpoints(
        &self,
        chain: &str,
    ) -> Result<Vec<portcullis_audit::Checkpoint>, StoreError> {
        self.inner.checkpoints(chain).await
    }
    async fn first_seq_since(&self, chain: &str, t: i64) -> Result<Option<u64>, StoreError> {
        self.inner.first_seq_since(chain, t).await
    }
    async fn purge(
        &self,
        chain: &str,
        anchor: &portcullis_audit::Checkpoint,
    ) -> Result<u64, StoreError> {
        self.inner.purge(chain, anchor).await
    }
    async fn used_bytes(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.used.load(std::sync::atomic::Ordering::Relaxed)))
    }
}

type StoreError = portcullis_audit::AuditStoreError;

#[tokio::test]
async fn space_freed_under_the_budget_ends_the_refusal() {
    use std::sync::{Arc, atomic::Ordering};
    for mode in [AuditMode::FailClosed, AuditMode::BestEffort] {
        let used = Arc::new(std::sync::atomic::AtomicU64::new(10_000));
        let store = Sized {
            inner: portcullis_sqlite::SqliteAuditStore::open_in_memory()
                .await
                .expect("store"),
            used: used.clone(),
        };
        let config = portcullis_server::config::AuditConfig {
            mode,
            max_bytes: Some(5_000),
            ..Default::default()
        };
        let log = portcullis_server::audit::AuditLog::start(
            &config,
            Arc::new(store),
            portcullis_audit::CheckpointSigner::from_seed(&[7; 32]),
            Arc::new(portcullis_core::clock::SystemClock),
            Default::default(),
        );
        let mut episodes = log.episodes().expect("enabled");
        eventually("over budget", || async { log.over_budget() }).await;
        assert_eq!(log.refusing(), mode == AuditMode::FailClosed, "{mode:?}");
        assert_eq!(log.admit().await.is_err(), mode == AuditMode::FailClosed);
        assert!(
            episodes.borrow_and_update().degraded,
            "an audit.degraded episode"
        );
        // A retention purge frees pages (here: the store says so); within a second or so the
        // writer measures again and service resumes.
        used.store(4_000, Ordering::Relaxed);
        eventually("under budget", || async { !log.over_budget() }).await;
        assert!(!log.refusing());
        log.admit().await.expect("admitted again");
        eventually("the episode ends", || async {
            !log.episodes().expect("on").borrow().degraded
        })
        .await;
        assert_eq!(log.metrics().over_budget.get(), 0);
        assert_eq!(log.metrics().store_bytes.get(), 4_000);
    }
}
