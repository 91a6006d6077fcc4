//! The NATS JetStream backend against a real server (127.0.0.1:4222, or `PORTCULLIS_NATS_URL`).
//! Without one the tests print why and pass, unless `PORTCULLIS_REQUIRE_SERVICES=1` (CI), when
//! they fail. Each test has its own stream and subject prefix, deleted at its end.
use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use portcullis_core::tenant::TenantId;
use portcullis_events::{
    Event, EventBackend, EventError, EventType, NewEvent, Scope, TypeSet,
    backend::{Delivery, subscribe},
    nats::{
        NatsBackend, NatsConfig,
        testing::{StreamGuard, fresh_config, services_required, url},
    },
};
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// A backend on a fresh stream, or `None` (printed) when no NATS server is reachable.
async fn setup() -> Option<(NatsBackend, StreamGuard)> {
    let config = fresh_config();
    match NatsBackend::connect(config.clone()).await {
        Ok(b) => Some((b, StreamGuard(config))),
        Err(EventError::Unavailable(why)) if !services_required() => {
            // `why` names the server, without credentials.
            println!("skipping: NATS not reachable: {why}");
            None
        }
        Err(e) => panic!("NATS backend (PORTCULLIS_REQUIRE_SERVICES=1): {e}"),
    }
}

/// A backend that deletes its stream when the last handle to it goes.
#[derive(Debug)]
struct Isolated {
    backend: NatsBackend,
    _guard: StreamGuard,
}

#[async_trait]
impl EventBackend for Isolated {
    async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, EventError> {
        self.backend.publish(events).await
    }
    async fn read_after(
        &self,
        after: u64,
        scope: &Scope,
        limit: usize,
    ) -> Result<Vec<Event>, EventError> {
        self.backend.read_after(after, scope, limit).await
    }
    fn live(&self) -> broadcast::Receiver<Arc<Event>> {
        self.backend.live()
    }
    async fn last_id(&self) -> Result<u64, EventError> {
        self.backend.last_id().await
    }
    async fn purge(&self, before: OffsetDateTime) -> Result<u64, EventError> {
        self.backend.purge(before).await
    }
}

async fn isolated() -> Option<Arc<dyn EventBackend>> {
    let (backend, guard) = setup().await?;
    Some(Arc::new(Isolated {
        backend,
        _guard: guard,
    }))
}

portcullis_events::events_conformance_tests!(conformance, optional isolated());

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant")
}

fn event(kind: EventType, t: Option<&str>, n: u64) -> NewEvent {
    NewEvent::new(
        kind,
        t.map(tenant),
        OffsetDateTime::now_utc(),
        serde_json::json!({ "n": n }),
    )
}

/// Events of `kind` for tenant `acme`, numbered `ns`.
fn acme(kind: EventType, ns: std::ops::Range<u64>) -> Vec<NewEvent> {
    ns.map(|n| event(kind, Some("acme"), n)).collect()
}

/// Every stored event, read from the start in pages of `size` (each after the last one read).
async fn read_in_pages(b: &NatsBackend, size: usize) -> Vec<Event> {
    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let page = b
            .read_after(cursor, &Scope::global(), size)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        cursor = last.id;
        all.extend(page);
    }
    all
}

fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_increase_duplicates_are_dropped_and_batches_are_pipelined() {
    let Some((b, _guard)) = setup().await else {
        return;
    };
    assert_eq!(b.last_id().await.expect("last id"), 0, "a fresh stream");
    let shown = format!("{b:?}");
    assert!(shown.contains(b.stream_name()), "{shown}");
    let stored = b
        .publish(vec![
            event(EventType::KeyCreated, Some("acme"), 0),
            event(EventType::AuditDegraded, None, 1),
            event(EventType::KeyRevoked, Some("other"), 2),
        ])
        .await
        .expect("publish");
    assert_eq!(ids(&stored), vec![1, 2, 3], "ids are the stream sequences");
    assert_eq!(b.last_id().await.expect("last id"), 3);

    // Raised once: the second publish of the same message id stores nothing, alone or with
    // another event, and twice in one batch stores it once.
    let now = OffsetDateTime::now_utc();
    let once = || {
        NewEvent::once(
            EventType::KeyExpiring,
            Some(tenant("acme")),
            now,
            "key_1:2030",
            serde_json::json!({}),
        )
    };
    let first = b.publish(vec![once(), once()]).await.expect("once");
    assert_eq!(ids(&first), vec![4]);
    assert!(b.publish(vec![once()]).await.expect("again").is_empty());
    let mixed = b
        .publish(vec![once(), event(EventType::KeyRolled, Some("acme"), 3)])
        .await
        .expect("mixed");
    assert_eq!(ids(&mixed), vec![5]);
    assert_eq!(mixed[0].kind, EventType::KeyRolled);

    // A batch of 1,000 goes out pipelined (sent, then acked in order), not one round trip
    // after another.
    let batch = acme(EventType::KeyUpdated, 0..1000);
    let started = std::time::Instant::now();
    let big = b.publish(batch).await.expect("big batch");
    let took = started.elapsed();
    println!("published 1000 events in {took:?}");
    assert_eq!(ids(&big), (6..1006).collect::<Vec<u64>>());
    for (i, e) in big.iter().enumerate() {
        assert_eq!(e.data["n"], i as u64);
    }
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(b.last_id().await.expect("last id"), 1005);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_after_keeps_tenants_and_types_apart_and_skips_gaps() {
    let Some((b, guard)) = setup().await else {
        return;
    };
    let mut batch = Vec::new();
    for n in 0..40 {
        let (kind, t) = match n % 4 {
            0 => (EventType::KeyCreated, Some("acme")),
            1 => (EventType::KeyRevoked, Some("other")),
            2 => (EventType::AuditDegraded, None),
            _ => (EventType::KeyRevoked, Some("acme")),
        };
        batch.push(event(kind, t, n));
    }
    let stored = b.publish(batch).await.expect("publish");
    let after = stored[4].id;
    let expect = |f: &dyn Fn(&Event) -> bool| -> Vec<Event> {
        stored
            .iter()
            .filter(|e| e.id > after && f(e))
            .cloned()
            .collect()
    };

    let acme = b
        .read_after(after, &Scope::tenant(tenant("acme")), 100)
        .await
        .expect("acme");
    assert_eq!(acme, expect(&|e| e.tenant == Some(tenant("acme"))));
    let other = b
        .read_after(after, &Scope::tenant(tenant("other")), 100)
        .await
        .expect("other");
    assert_eq!(other, expect(&|e| e.tenant == Some(tenant("other"))));
    let nobody = b
        .read_after(0, &Scope::tenant(tenant("nobody")), 100)
        .await
        .expect("nobody");
    assert!(nobody.is_empty(), "another tenant's events never");

    // One type: filtered by the server; two: filtered here.
    let mut one = TypeSet::none();
    one.insert(EventType::KeyRevoked);
    let revoked = b
        .read_after(after, &Scope::tenant(tenant("acme")).with_types(one), 100)
        .await
        .expect("one type");
    assert_eq!(
        revoked,
        expect(&|e| e.tenant == Some(tenant("acme")) && e.kind == EventType::KeyRevoked)
    );
    let mut two = one;
    two.insert(EventType::AuditDegraded);
    let global_two = b
        .read_after(after, &Scope::global().with_types(two), 100)
        .await
        .expect("two types");
    assert_eq!(
        global_two,
        expect(&|e| matches!(e.kind, EventType::KeyRevoked | EventType::AuditDegraded))
    );
    let limited = b
        .read_after(after, &Scope::global().with_types(two), 3)
        .await
        .expect("limited");
    assert_eq!(limited, global_two[..3].to_vec());

    // Paging through everything with a small limit gives exactly the stored events.
    assert_eq!(read_in_pages(&b, 7).await, stored);

    // A deleted sequence, a body this version cannot read and a body that disagrees with its
    // subject are skipped.
    let client = async_nats::connect(url()).await.expect("raw client");
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(b.stream_name()).await.expect("stream");
    assert!(stream.delete_message(stored[8].id).await.expect("delete"));
    let prefix = &guard.0.subject_prefix;
    js.publish(
        format!("{prefix}.acme.key.future"),
        r#"{"type":"key.future","tenant":"acme","time":"2030-01-01T00:00:00Z","data":{}}"#.into(),
    )
    .await
    .expect("raw publish")
    .await
    .expect("ack");
    js.publish(
        format!("{prefix}.acme.key.created"),
        r#"{"type":"key.created","tenant":"other","time":"2030-01-01T00:00:00Z","data":{}}"#.into(),
    )
    .await
    .expect("raw publish")
    .await
    .expect("ack");
    let tail = b
        .publish(vec![event(EventType::KeyCreated, Some("acme"), 99)])
        .await
        .expect("publish after");
    let acme_now = b
        .read_after(after, &Scope::tenant(tenant("acme")), 100)
        .await
        .expect("acme after gaps");
    let mut want = expect(&|e| e.tenant == Some(tenant("acme")) && e.id != stored[8].id);
    want.extend(tail.clone());
    assert_eq!(acme_now, want);
    let other_now = b
        .read_after(after, &Scope::tenant(tenant("other")), 100)
        .await
        .expect("other after");
    assert_eq!(
        other_now, other,
        "a body claiming another tenant is not shown to it"
    );
    assert_eq!(
        b.read_after(tail[0].id, &Scope::global(), 100)
            .await
            .expect("after last"),
        Vec::new()
    );
    assert_eq!(b.last_id().await.expect("last id"), tail[0].id);
    // The read-back consumers are deleted after each read: at most the live feed's one stays.
    let mut stream = stream;
    let mut consumers = usize::MAX;
    for _ in 0..200 {
        consumers = stream.info().await.expect("info").state.consumer_count;
        if consumers <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // (0 is possible: the live feed's ordered consumer is recreated by its client when a
    // heartbeat is late, as on a loaded machine.)
    assert!(
        consumers <= 1,
        "read-back consumers left behind: {consumers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_sees_the_events_in_its_live_feed() {
    let Some((a, guard)) = setup().await else {
        return;
    };
    // A second backend on the same stream stands for another node.
    let b = NatsBackend::connect(guard.0.clone())
        .await
        .expect("second node");
    let mut on_a = a.live();
    let mut on_b = b.live();
    let mut published = Vec::new();
    for round in 0..4u64 {
        let from = if round % 2 == 0 { &a } else { &b };
        published.extend(
            from.publish(
                (0..5)
                    .map(|i| event(EventType::KeyCreated, Some("acme"), round * 5 + i))
                    .collect(),
            )
            .await
            .expect("publish"),
        );
    }
    for live in [&mut on_a, &mut on_b] {
        for expected in &published {
            let got = tokio::time::timeout(Duration::from_secs(5), live.recv())
                .await
                .expect("live event in time")
                .expect("feed open");
            assert_eq!(got.as_ref(), expected);
        }
    }
    // A node that connects later sees only what is stored after it connected.
    let c = NatsBackend::connect(guard.0.clone())
        .await
        .expect("third node");
    let mut on_c = c.live();
    let later = a
        .publish(vec![event(EventType::KeyRevoked, Some("acme"), 100)])
        .await
        .expect("publish later");
    let got = tokio::time::timeout(Duration::from_secs(5), on_c.recv())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!(got.as_ref(), &later[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_replays_then_goes_live_with_no_gap_while_publishing() {
    let Some((a, guard)) = setup().await else {
        return;
    };
    let a = Arc::new(a);
    let b: Arc<dyn EventBackend> = Arc::new(
        NatsBackend::connect(guard.0.clone())
            .await
            .expect("second node"),
    );
    let mut before = Vec::new();
    for n in 0..300u64 {
        let t = if n % 3 == 0 { "other" } else { "acme" };
        before.push(event(EventType::KeyCreated, Some(t), n));
    }
    let stored_before = a.publish(before).await.expect("publish before");
    let after = stored_before[9].id;
    let mut expected: BTreeSet<u64> = stored_before
        .iter()
        .filter(|e| e.id > after && e.tenant == Some(tenant("acme")))
        .map(|e| e.id)
        .collect();

    // The subscription reads on node B while node A goes on publishing.
    let mut sub = subscribe(
        b.clone(),
        Scope::tenant(tenant("acme")),
        Some(after),
        10_000,
    )
    .await;
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for chunk in 0..30u64 {
                let batch = (0..10)
                    .map(|i| {
                        let n = 300 + chunk * 10 + i;
                        let t = if n % 3 == 0 { "other" } else { "acme" };
                        event(EventType::KeyUpdated, Some(t), n)
                    })
                    .collect();
                ids.extend(a.publish(batch).await.expect("publish during replay"));
                tokio::task::yield_now().await;
            }
            ids
        })
    };
    // The tenant's events published during the replay: n % 3 != 0 for n in 300..600.
    let during_for_acme = (300..600u64).filter(|n| n % 3 != 0).count();
    let total = expected.len() + during_for_acme;
    let mut seen = BTreeSet::new();
    let mut last = after;
    while seen.len() < total {
        let d = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("delivery in time")
            .expect("subscription open");
        let Delivery::Event(e) = d else {
            panic!("unexpected {d:?}");
        };
        assert!(e.id > last, "ids strictly increase: {} after {last}", e.id);
        last = e.id;
        assert_eq!(e.tenant, Some(tenant("acme")), "only the tenant's");
        assert!(seen.insert(e.id), "no duplicate");
    }
    let during = writer.await.expect("writer");
    assert_eq!(during.len(), 300);
    expected.extend(
        during
            .iter()
            .filter(|e| e.tenant == Some(tenant("acme")))
            .map(|e| e.id),
    );
    assert_eq!(
        seen, expected,
        "exactly the tenant's events after the id, no gap"
    );
    // Nothing more is waiting.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_credentials_stay_out_of_errors() {
    let config = NatsConfig {
        connect_timeout: Duration::from_secs(2),
        ..NatsConfig::new("nats://portcullis:hunter2-secret@127.0.0.1:1")
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    match NatsBackend::connect(config).await {
        Err(EventError::Unavailable(text)) => {
            assert!(!text.contains("hunter2-secret"), "{text}");
            assert!(text.contains("127.0.0.1:1"), "{text}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    let bad = NatsConfig {
        stream: String::from("no.dots"),
        ..NatsConfig::default()
    };
    assert!(matches!(
        NatsBackend::connect(bad).await,
        Err(EventError::Backend(_))
    ));
}

/// A NATS server of this test's own (the shared one cannot be restarted), on a free port with
/// a store in a temporary directory; killed when dropped.
struct OwnServer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl OwnServer {
    fn binary() -> Option<std::path::PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([std::path::PathBuf::from("/usr/sbin")])
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    }

    fn start(port: u16, dir: &std::path::Path) -> std::process::Child {
        std::process::Command::new(Self::binary().expect("nats-server"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server")
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("own nats-server did not start");
    }

    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::start(self.port, &self.dir);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_and_publishing_survive_a_server_restart() {
    if OwnServer::binary().is_none() {
        println!("skipping: no nats-server binary to run a server of this test's own");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("portcullis-nats-{}", ulid::Ulid::new()));
    let mut server = OwnServer {
        child: OwnServer::start(port, &dir),
        port,
        dir,
    };
    server.wait_ready().await;
    let config = NatsConfig {
        request_timeout: Duration::from_secs(1),
        ..NatsConfig::new(server.url())
    };
    let b = NatsBackend::connect(config).await.expect("connect");
    let mut live = b.live();
    let first = b
        .publish(acme(EventType::KeyCreated, 0..5))
        .await
        .expect("publish");
    for expected in &first {
        let got = tokio::time::timeout(Duration::from_secs(5), live.recv())
            .await
            .expect("in time")
            .expect("open");
        assert_eq!(got.as_ref(), expected);
    }

    server.restart();
    server.wait_ready().await;
    // Publishing the same batch again until it goes through is safe: its message ids are
    // dropped if an earlier try was stored.
    let second = acme(EventType::KeyRevoked, 5..10);
    let mut stored = Vec::new();
    let mut failures = 0;
    while stored.is_empty() {
        match b.publish(second.clone()).await {
            Ok(s) if !s.is_empty() => stored = s,
            Ok(_) => panic!("every try was a duplicate: the first one's events are lost"),
            Err(EventError::Unavailable(_)) if failures < 30 => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("publish after restart: {e}"),
        }
    }
    println!("published after the restart, after {failures} failed tries");
    assert_eq!(stored.len(), 5);
    assert_eq!(
        stored[0].id,
        first[4].id + 1,
        "the stream kept its sequence"
    );
    for expected in &stored {
        let got = tokio::time::timeout(Duration::from_secs(15), live.recv())
            .await
            .expect("live again after the restart")
            .expect("open");
        assert_eq!(got.as_ref(), expected, "no gap, no duplicate");
    }
    assert_eq!(
        b.read_after(0, &Scope::global(), 100)
            .await
            .expect("read")
            .len(),
        10
    );
}

/// A TCP proxy to the NATS server that swallows the client's no-wait pull requests (the
/// read-back's fetches) while `to_swallow` is above 0, counting them in `swallowed`: it stands
/// for a server that leaves a pull unanswered. Everything else passes both ways unchanged.
struct PullSwallower {
    url: String,
    to_swallow: Arc<std::sync::atomic::AtomicUsize>,
    swallowed: Arc<std::sync::atomic::AtomicUsize>,
}

impl PullSwallower {
    async fn start(server_url: &str) -> Self {
        use std::sync::atomic::AtomicUsize;
        let server = server_url
            .trim_start_matches("nats://")
            .rsplit('@')
            .next()
            .expect("host")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("nats://{}", listener.local_addr().expect("addr"));
        let to_swallow = Arc::new(AtomicUsize::new(0));
        let swallowed = Arc::new(AtomicUsize::new(0));
        let (t, s) = (to_swallow.clone(), swallowed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(&server).await else {
                    continue;
                };
                let (client_read, mut client_write) = client.into_split();
                let (upstream_read, upstream_write) = upstream.into_split();
                tokio::spawn(async move {
                    let mut upstream_read = upstream_read;
                    let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
                });
                tokio::spawn(Self::client_to_server(
                    client_read,
                    upstream_write,
                    t.clone(),
                    s.clone(),
                ));
            }
        });
        Self {
            url,
            to_swallow,
            swallowed,
        }
    }

    /// Copies the client's protocol lines (and message payloads) to the server, but for the
    /// pulls it swallows.
    async fn client_to_server(
        from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        to_swallow: Arc<std::sync::atomic::AtomicUsize>,
        swallowed: Arc<std::sync::atomic::AtomicUsize>,
    ) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let mut from = tokio::io::BufReader::new(from);
        loop {
            let mut line = Vec::new();
            if from.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let words: Vec<&str> = text.split_whitespace().collect();
            if !matches!(words.first(), Some(&"PUB") | Some(&"HPUB")) {
                to.write_all(&line).await?;
                continue;
            }
            // PUB subject [reply] size / HPUB subject [reply] header-size total-size
            let size: usize = words
                .last()
                .and_then(|n| n.parse().ok())
                .expect("message size");
            let mut payload = vec![0; size + 2];
            from.read_exact(&mut payload).await?;
            let pull = words[1].starts_with("$JS.API.CONSUMER.MSG.NEXT.")
                && String::from_utf8_lossy(&payload).contains("\"no_wait\":true");
            if pull
                && to_swallow
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                swallowed.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            to.write_all(&line).await?;
            to.write_all(&payload).await?;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_goes_on_past_a_pull_the_server_leaves_unanswered() {
    use std::sync::atomic::Ordering;
    let Some((direct, guard)) = setup().await else {
        return;
    };
    let stored = direct
        .publish(acme(EventType::KeyCreated, 0..30))
        .await
        .expect("publish");
    let proxy = PullSwallower::start(&guard.0.url).await;
    let config = NatsConfig {
        url: proxy.url.clone(),
        request_timeout: Duration::from_secs(2),
        ..guard.0.clone()
    };
    let b = NatsBackend::connect(config)
        .await
        .expect("connect through the proxy");

    // The first pull of the read goes unanswered: the read goes on from a new consumer, with
    // every event once.
    proxy.to_swallow.store(1, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let all = b
        .read_after(0, &Scope::global(), 100)
        .await
        .expect("read past an unanswered pull");
    assert_eq!(proxy.swallowed.load(Ordering::SeqCst), 1);
    assert_eq!(all, stored);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "given up after a quarter of the request timeout, not the whole of it: {:?}",
        started.elapsed()
    );

    // A pull unanswered after some messages came: the read goes on after the last one received.
    proxy.to_swallow.store(2, Ordering::SeqCst);
    let paged = read_in_pages(&b, 7).await;
    assert_eq!(proxy.swallowed.load(Ordering::SeqCst), 3);
    assert_eq!(paged, stored, "nothing lost, nothing twice");

    // A server that answers no pull at all: the read fails as unavailable after three more.
    proxy.to_swallow.store(usize::MAX, Ordering::SeqCst);
    match b.read_after(0, &Scope::global(), 100).await {
        Err(EventError::Unavailable(why)) => assert!(why.contains("timed out"), "{why}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(proxy.swallowed.load(Ordering::SeqCst), 3 + 4);
}
