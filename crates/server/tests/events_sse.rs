//! `GET /v1/events` with a real SSE client over HTTP: live delivery and tenant isolation,
//! `Last-Event-ID` replay while events keep coming, `?types=`, heartbeats and `retry:`, the slow
//! consumer's bounded buffer and `reconnect` frame, the subscriber limit, shutdown, and no
//! secret in any frame.
use std::{pin::Pin, time::Duration};

use futures_util::{Stream, StreamExt};
use portcullis_core::tenant::TenantId;
use portcullis_events::{EventType, NewEvent};
use portcullis_testkit::{TestServer, spawn, spawn_with};
use reqwest::Method;
use serde_json::{Value, json};

/// A frame as a client sees it (WHATWG rules; comments kept for the heartbeat test).
#[derive(Debug, Default, Clone)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comments: Vec<String>,
}

impl Frame {
    fn id(&self) -> u64 {
        self.id.as_deref().expect("an id").parse().expect("decimal")
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }

    fn is_event(&self) -> bool {
        self.data.is_some()
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// An open SSE response, read frame by frame.
struct Sse {
    body: Body,
    buf: Vec<u8>,
    /// Everything received, as text.
    raw: String,
}

/// Opens `/v1/events{query}` with `key`; panics unless it answers 200 with the SSE headers.
async fn open(s: &TestServer, key: &str, query: &str, last_id: Option<u64>) -> Sse {
    let resp = request(s, key, query, last_id).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-accel-buffering"], "no");
    Sse {
        body: Box::pin(resp.bytes_stream().map(|r| r.map(|b| b.to_vec()))),
        buf: Vec::new(),
        raw: String::new(),
    }
}

async fn request(
    s: &TestServer,
    key: &str,
    query: &str,
    last_id: Option<u64>,
) -> reqwest::Response {
    let mut req = s
        .client
        .get(s.url(&format!("/v1/events{query}")))
        .bearer_auth(key);
    if let Some(id) = last_id {
        req = req.header("last-event-id", id.to_string());
    }
    req.send().await.expect("send")
}

/// The status and error code of a refused stream request.
async fn refused(s: &TestServer, key: &str, query: &str, last_id: Option<&str>) -> (u16, String) {
    let mut req = s
        .client
        .get(s.url(&format!("/v1/events{query}")))
        .bearer_auth(key);
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("an error body");
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

fn parse(block: &str) -> Frame {
    let mut f = Frame::default();
    for line in block.split('\n') {
        if let Some(c) = line.strip_prefix(':') {
            f.comments.push(c.trim_start().to_owned());
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "id" => f.id = Some(value.to_owned()),
            "event" => f.event = Some(value.to_owned()),
            "retry" => f.retry = value.parse().ok(),
            "data" => {
                let d = f.data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(value);
            }
            _ => {}
        }
    }
    f
}

impl Sse {
    /// The next frame (events, comments and the `retry:` frame alike); `None` when the stream
    /// ended. Panics when nothing arrives within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        tokio::time::timeout(wait, self.read())
            .await
            .expect("a frame in time")
    }

    async fn next(&mut self) -> Option<Frame> {
        self.next_within(Duration::from_secs(30)).await
    }

    async fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).expect("UTF-8");
                return Some(parse(text.trim_end_matches('\n')));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.raw.push_str(&String::from_utf8_lossy(&chunk));
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => panic!("stream failed: {e}"),
                None => return None,
            }
        }
    }

    /// The next event frame, skipping heartbeats.
    async fn event(&mut self) -> Frame {
        loop {
            let f = self.next().await.expect("the stream goes on");
            if f.is_event() {
                return f;
            }
        }
    }

    /// Reads the opening `retry:` frame.
    async fn opened(mut self) -> Self {
        let f = self.next().await.expect("a first frame");
        assert!(f.retry.is_some() && !f.is_event(), "{f:?}");
        self
    }
}

fn secret_body(secret: &str) -> &str {
    &secret[secret.rfind('_').expect("underscore") + 1..]
}

fn acme() -> TenantId {
    TenantId::parse("acme").expect("tenant")
}

/// Publishes `n` events of `tenant` (alternating with `other` when given), `batch` at a time;
/// returns the ids of those of `tenant`, and of every event.
async fn publish(
    s: &TestServer,
    n: usize,
    batch: usize,
    pad: usize,
    other: Option<TenantId>,
) -> (Vec<u64>, Vec<u64>) {
    let (mut mine, mut all) = (Vec::new(), Vec::new());
    let events = s.state.events.clone();
    let padding = "x".repeat(pad);
    for start in (0..n).step_by(batch) {
        let list: Vec<NewEvent> = (start..n.min(start + batch))
            .map(|i| {
                let t = match (&other, i % 2) {
                    (Some(o), 1) => o.clone(),
                    _ => acme(),
                };
                NewEvent::new(
                    EventType::KeyUpdated,
                    Some(t),
                    time::OffsetDateTime::now_utc(),
                    json!({"n": i, "pad": padding}),
                )
            })
            .collect();
        for e in events.publish(list).await {
            if e.tenant == Some(acme()) {
                mine.push(e.id);
            }
            all.push(e.id);
        }
    }
    assert_eq!(all.len(), n, "every event was stored");
    (mine, all)
}

#[tokio::test]
async fn tenants_see_their_own_events_live_and_root_sees_all() {
    let s = spawn().await;
    s.tenant("acme").await;
    s.tenant("globex").await;
    let acme_reader = s.admin_key(Some("acme"), &["events:read"]).await;
    let globex_reader = s.admin_key(Some("globex"), &["events:read"]).await;
    let no_scope = s
        .admin_key(Some("acme"), &["keys:read", "audit:read"])
        .await;

    let mut a = open(&s, &acme_reader, "", None).await.opened().await;
    let mut g = open(&s, &globex_reader, "", None).await.opened().await;
    let mut root = open(&s, &s.root_secret, "", None).await.opened().await;

    let (k1, secret1) = s
        .key("acme", json!({"name": "one", "environment": "live"}))
        .await;
    let (_, r) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{k1}/roll"),
            &s.root_secret,
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    let secret2 = r["secret"].as_str().expect("rolled secret").to_owned();
    let (st, _) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{k1}/revoke"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (g1, secret3) = s
        .key("globex", json!({"name": "g", "environment": "test"}))
        .await;
    let (a2, _) = s
        .key("acme", json!({"name": "marker", "environment": "live"}))
        .await;
    let (g2, _) = s
        .key("globex", json!({"name": "marker", "environment": "live"}))
        .await;

    let expect = |f: &Frame, kind: &str, tenant: &str, key: &str| {
        assert_eq!(f.event.as_deref(), Some(kind), "{f:?}");
        let v = f.json();
        assert_eq!(v["type"], kind);
        assert_eq!(v["tenant"], tenant);
        assert_eq!(v["data"]["key_id"], key);
        assert_eq!(v["id"].as_u64(), Some(f.id()), "id: is the event id");
    };
    // Acme's reader: its key's life, then its marker; nothing of globex in between.
    let mut acme_ids = Vec::new();
    for (kind, key) in [
        ("key.created", &k1),
        ("key.rolled", &k1),
        ("key.revoked", &k1),
        ("key.created", &a2),
    ] {
        let f = a.event().await;
        expect(&f, kind, "acme", key);
        acme_ids.push(f.id());
    }
    // Globex's reader: its two keys only.
    for key in [&g1, &g2] {
        expect(&g.event().await, "key.created", "globex", key);
    }
    // Root: everything, in id order.
    let mut root_ids = Vec::new();
    for (kind, tenant, key) in [
        ("key.created", "acme", &k1),
        ("key.rolled", "acme", &k1),
        ("key.revoked", "acme", &k1),
        ("key.created", "globex", &g1),
        ("key.created", "acme", &a2),
        ("key.created", "globex", &g2),
    ] {
        let f = root.event().await;
        expect(&f, kind, tenant, key);
        root_ids.push(f.id());
    }
    assert!(root_ids.windows(2).all(|w| w[0] < w[1]));
    assert!(acme_ids.iter().all(|id| root_ids.contains(id)));
    // No secret, new or rolled, in any frame.
    for text in [&a.raw, &g.raw, &root.raw] {
        for secret in [&secret1, &secret2, &secret3, &s.root_secret] {
            assert!(
                !text.contains(secret_body(secret)),
                "a secret in the stream"
            );
        }
    }
    assert_eq!(s.state.events.open_streams(), 3);
    assert_eq!(s.state.events.metrics().sse_subscribers.get(), 3);

    // Refusals: scope, no credential, a key in the URL.
    assert_eq!(
        refused(&s, &no_scope, "", None).await,
        (403, "insufficient_scope".into())
    );
    let r = s
        .client
        .get(s.url("/v1/events"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = s
        .client
        .get(s.url(&format!("/v1/events?api_key={acme_reader}")))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "api_key_in_query");
    let r = s
        .client
        .get(s.url("/v1/events"))
        .bearer_auth(format!("{acme_reader}x"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);

    // Closed streams give their places back.
    drop((a, g, root));
    wait_for(|| s.state.events.open_streams() == 0).await;
    assert_eq!(s.state.events.metrics().sse_subscribers.get(), 0);
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_replays_then_follows_live_without_gap_or_duplicate() {
    let s = spawn().await;
    s.tenant("acme").await;
    s.tenant("globex").await;
    let reader = s.admin_key(Some("acme"), &["events:read"]).await;
    let globex = TenantId::parse("globex").expect("tenant");
    // 3,000 stored events, half acme's: the replay spans several pages.
    let (stored, _) = publish(&s, 3_000, 250, 0, Some(globex.clone())).await;
    let k = stored[99];

    // Keep publishing while the replay runs.
    let events = s.state.events.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(async move {
        let mut mine = Vec::new();
        let mut started = Some(started_tx);
        for i in 0..400 {
            let t = if i % 2 == 0 { acme() } else { globex.clone() };
            let last = i == 398;
            let e = NewEvent::new(
                EventType::KeyRevoked,
                Some(t),
                time::OffsetDateTime::now_utc(),
                json!({"i": i, "last": last}),
            );
            for e in events.publish(vec![e]).await {
                if e.tenant == Some(acme()) {
                    mine.push(e.id);
                }
            }
            if let Some(tx) = started.take() {
                let _ = tx.send(());
            }
            if i % 20 == 0 {
                tokio::task::yield_now().await;
            }
        }
        mine
    });
    started_rx.await.expect("the publisher started");
    // A client reading more slowly than the store replays may be told to reconnect (the replay
    // is bounded by the stream's buffer too): it does, with the id it was given.
    let (mut got, mut from, mut reconnects) = (Vec::new(), k, 0);
    'streams: loop {
        let mut sse = open(&s, &reader, "", Some(from)).await.opened().await;
        loop {
            let f = sse.event().await;
            let v = f.json();
            if f.event.as_deref() == Some("reconnect") {
                assert_eq!(v["reason"], "slow_consumer", "{v}");
                // At or after the last event received (events it may not see can follow).
                assert!(f.id() >= from, "resume after the last event received");
                from = f.id();
                reconnects += 1;
                assert!(reconnects < 100, "the client makes progress");
                continue 'streams;
            }
            assert_eq!(v["tenant"], "acme", "{v}");
            from = f.id();
            got.push(from);
            if v["data"]["last"] == true {
                break 'streams;
            }
        }
    }
    let live = publisher.await.expect("publisher");
    let expected: Vec<u64> = stored
        .iter()
        .chain(live.iter())
        .copied()
        .filter(|id| *id > k)
        .collect();
    assert!(expected.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(got.len(), expected.len(), "no gap, no duplicate");
    assert_eq!(got, expected, "every id after k, once, in order");
}

#[tokio::test]
async fn types_filter_and_bad_parameters() {
    let s = spawn().await;
    s.tenant("acme").await;
    let reader = s.admin_key(Some("acme"), &["events:read"]).await;
    let mut revoked = open(&s, &reader, "?types=key.revoked", None)
        .await
        .opened()
        .await;
    let mut both = open(
        &s,
        &s.root_secret,
        "?types=key.created,key.revoked&tenant=acme",
        None,
    )
    .await
    .opened()
    .await;
    let mut own = open(&s, &reader, "?tenant=acme", None).await.opened().await;
    let (id, _) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    s.json(
        Method::PATCH,
        &format!("/v1/tenants/acme/keys/{id}"),
        &s.root_secret,
        Some(json!({"name": "renamed"})),
    )
    .await;
    s.json(
        Method::POST,
        &format!("/v1/tenants/acme/keys/{id}/revoke"),
        &s.root_secret,
        None,
    )
    .await;
    assert_eq!(revoked.event().await.event.as_deref(), Some("key.revoked"));
    assert_eq!(both.event().await.event.as_deref(), Some("key.created"));
    assert_eq!(both.event().await.event.as_deref(), Some("key.revoked"));
    for kind in ["key.created", "key.updated", "key.revoked"] {
        assert_eq!(own.event().await.event.as_deref(), Some(kind));
    }

    let bad = [
        ("?types=key.nope", None, 400, "invalid_query"),
        ("?types=", None, 400, "invalid_query"),
        ("?types=key.created,", None, 400, "invalid_query"),
        ("?since=1", None, 400, "invalid_query"),
        ("?last_event_id=1", None, 400, "invalid_query"),
        ("", Some("abc"), 400, "invalid_last_event_id"),
        ("", Some("-1"), 400, "invalid_last_event_id"),
        ("", Some("1e3"), 400, "invalid_last_event_id"),
        (
            "",
            Some("184467440737095516160"),
            400,
            "invalid_last_event_id",
        ),
    ];
    for (query, last, status, code) in bad {
        assert_eq!(
            refused(&s, &reader, query, last).await,
            (status, code.to_owned()),
            "{query} {last:?}"
        );
    }
    // A root key naming a tenant that does not exist, or an invalid one.
    for q in ["?tenant=nope-nope", "?tenant=A!"] {
        assert_eq!(
            refused(&s, &s.root_secret, q, None).await,
            (404, "not_found".into())
        );
    }

    // Events off: the endpoint does not exist.
    let off = spawn_with(|c| c.events.enabled = false).await;
    assert_eq!(
        refused(&off, &off.root_secret, "", None).await,
        (404, "not_found".into())
    );
}

#[tokio::test]
async fn retry_comes_first_and_heartbeats_keep_the_stream_alive() {
    let s = spawn_with(|c| {
        c.events.sse.heartbeat_seconds = 1;
        c.events.sse.retry_ms = 1_500;
    })
    .await;
    let mut sse = open(&s, &s.root_secret, "", None).await;
    let first = sse.next().await.expect("a first frame");
    assert_eq!(first.retry, Some(1_500));
    assert!(sse.raw.starts_with("retry: 1500\n"), "{:?}", sse.raw);
    let beat = sse
        .next_within(Duration::from_secs(5))
        .await
        .expect("a heartbeat");
    assert_eq!(beat.comments, vec!["heartbeat".to_owned()], "{beat:?}");
    assert!(!beat.is_event());
    let again = sse
        .next_within(Duration::from_secs(5))
        .await
        .expect("another heartbeat");
    assert_eq!(again.comments, vec!["heartbeat".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_told_to_reconnect_and_resumes_without_gap() {
    let s = spawn_with(|c| c.events.sse.buffer = 16).await;
    s.tenant("acme").await;
    let mut slow = open(&s, &s.root_secret, "", None).await.opened().await;
    // The client reads nothing while 2,000 events of 8 KiB (16 MB, far more than the kernel's
    // socket buffers hold) are published, in batches smaller than the buffer.
    let (_, all) = publish(&s, 2_000, 8, 8 * 1024, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::new();
    let reconnect = loop {
        let f = slow
            .next()
            .await
            .expect("the reconnect frame before the end");
        if f.event.as_deref() == Some("reconnect") {
            break f;
        }
        if f.is_event() {
            got.push(f.id());
        }
    };
    assert!(
        slow.next().await.is_none(),
        "the stream ends after reconnect"
    );
    assert!(got.len() < all.len(), "the slow client was cut off");
    assert_eq!(got, all[..got.len()], "what it got has no gap");
    let v = reconnect.json();
    assert_eq!(v["reason"], "slow_consumer");
    let resume = reconnect.id();
    assert_eq!(v["last_event_id"], resume.to_string());
    assert_eq!(
        Some(&resume),
        got.last(),
        "resume after the last event it got"
    );
    assert_eq!(s.state.events.metrics().sse_overflows.get(), 1);

    // Resuming from that id gives the rest, once each. (The replay itself is bounded by the
    // same small buffer, so a client slower than the store may be told to reconnect again: it
    // follows each `reconnect` with its id, as a real client does.)
    drop(slow);
    let want: Vec<u64> = all.iter().copied().filter(|id| *id > resume).collect();
    let (mut more, mut from, mut reconnects) = (Vec::new(), resume, 0);
    while more.len() < want.len() {
        let mut rest = open(&s, &s.root_secret, "", Some(from))
            .await
            .opened()
            .await;
        while more.len() < want.len() {
            let f = rest.event().await;
            if f.event.as_deref() == Some("reconnect") {
                assert_eq!(f.json()["reason"], "slow_consumer");
                assert_eq!(f.id(), from, "resume after the last event received");
                reconnects += 1;
                break;
            }
            from = f.id();
            more.push(from);
        }
        assert!(reconnects < 1_000, "the client makes progress");
    }
    assert_eq!(more, want);
    wait_for(|| s.state.events.open_streams() == 0).await;
}

#[tokio::test]
async fn subscribers_are_limited_and_shutdown_ends_streams() {
    let s = spawn_with(|c| c.events.sse.max_subscribers = 2).await;
    let one = open(&s, &s.root_secret, "", None).await.opened().await;
    let mut two = open(&s, &s.root_secret, "", None).await.opened().await;
    let r = request(&s, &s.root_secret, "", None).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "too_many_subscribers");
    drop(one);
    wait_for(|| s.state.events.open_streams() == 1).await;
    let _three = open(&s, &s.root_secret, "", None).await.opened().await;

    // A graceful shutdown ends open streams with a reconnect frame instead of waiting forever.
    s.tenant("acme").await;
    let (_, _) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    let created = two.event().await;
    tokio::time::timeout(Duration::from_secs(10), s.shutdown())
        .await
        .expect("shutdown does not wait for event streams");
    let last = two.event().await;
    assert_eq!(last.event.as_deref(), Some("reconnect"));
    assert_eq!(last.json()["reason"], "shutdown");
    assert_eq!(last.id(), created.id());
    assert!(two.next().await.is_none());
}
