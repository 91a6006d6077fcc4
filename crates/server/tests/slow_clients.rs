//! Slow and greedy clients, over real sockets on both listeners (admin / verify API and
//! gateway): header bytes trickled in are cut at the header-read timeout while other clients are
//! served, idle kept-alive connections are closed, stalled bodies are cut with 408, connections
//! are capped in all and per client address, oversized heads get 431, and event streams are
//! capped per tenant and per key. Timeouts are configured short (about 1 s) to keep this fast.
mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use portcullis_server::listen::ConnectionLimits;
use portcullis_testkit::{TestServer, spawn_with};
use serde_json::Value;
use support::{
    gateway::route,
    upstream::{self, Upstream},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// Short timeouts; caps high enough not to matter unless a test lowers them.
fn limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout_ms: 1_000,
        idle_timeout_ms: 1_500,
        body_read_timeout_ms: 1_000,
        ..ConnectionLimits::default()
    }
}

/// A server whose gateway has a public catch-all route and a public upload route to an echo
/// upstream; `adjust` changes both listeners' limits.
async fn setup(adjust: impl Fn(&mut ConnectionLimits)) -> (TestServer, Upstream) {
    let up = upstream::start().await;
    let mut g = support::gateway::config(format!("http://{}", up.addr), 10_000);
    let mut upload = route("upload", "/upload", "main");
    upload.upload = true;
    upload.public = true;
    let mut rest = route("rest", "/", "main");
    rest.public = true;
    g.routes = vec![upload, rest];
    let mut l = limits();
    adjust(&mut l);
    g.connections = l.clone();
    let s = spawn_with(move |c| {
        c.gateway = g;
        c.connections = l;
    })
    .await;
    (s, up)
}

fn listeners(s: &TestServer) -> [(&'static str, SocketAddr, &'static str); 2] {
    [
        ("api", s.addr, "/healthz"),
        ("gateway", s.gateway_addr.expect("gateway"), "/anything"),
    ]
}

async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{src}:0").parse().expect("addr"))
        .expect("bind the client address");
    sock.connect(to).await.expect("connect")
}

/// Has the server closed `s` (EOF or reset) within `wait`? Any bytes read are returned too.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (false, got),
            Ok(Ok(0) | Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a request head one byte every 300 ms (a header line that never ends); returns how
/// long the server kept the connection open (capped at 5 s).
async fn trickle(addr: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
        .iter()
        .copied();
    for b in head.chain(std::iter::repeat(b'a')) {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        let (closed, got) = closed_within(&mut s, Duration::from_millis(300)).await;
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "no answer expected"
        );
        if closed || start.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    start.elapsed()
}

/// Sends `request` whole and reads the answer until the server closes or 5 s pass; returns the
/// status and the text after the head.
async fn exchange(s: &mut TcpStream, request: &[u8]) -> (u16, String) {
    s.write_all(request).await.expect("write");
    let (_, got) = closed_within(s, Duration::from_secs(5)).await;
    parse(&got)
}

fn parse(got: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(got);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_owned())
}

#[tokio::test]
async fn trickled_headers_are_cut_at_the_timeout_while_others_are_served() {
    let (s, _up) = setup(|_| {}).await;
    for (name, addr, path) in listeners(&s) {
        let slow: Vec<_> = (0..3).map(|_| tokio::spawn(trickle(addr))).collect();
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let url = format!("http://{addr}{path}");
        let mut served = 0;
        while !slow.iter().all(|t| t.is_finished()) {
            let r = client.get(&url).send().await.expect("a normal request");
            assert_eq!(r.status(), 200, "{name}: normal requests keep being served");
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served >= 5, "{name}: {served}");
        for t in slow {
            let open = t.await.expect("trickle");
            assert!(
                open >= Duration::from_millis(900) && open < Duration::from_millis(2_500),
                "{name}: a trickling connection was open for {open:?}, not ~1 s"
            );
        }
    }
    let m = support::gateway::metrics(&s).await;
    for name in ["api", "gateway"] {
        assert!(
            m.contains(&format!(
                "listener_timed_out_connections_total{{listener=\"{name}\",reason=\"header_read_timeout\"}} 3"
            )),
            "{m}"
        );
    }
}

#[tokio::test]
async fn idle_kept_alive_connections_are_closed() {
    let (s, _up) = setup(|_| {}).await;
    for (name, addr, path) in listeners(&s) {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        c.write_all(req.as_bytes()).await.expect("write");
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{name}");
        let idle = Instant::now();
        let (closed, _) = closed_within(&mut c, Duration::from_secs(4)).await;
        let after = idle.elapsed();
        assert!(closed, "{name}: an idle connection is closed");
        assert!(
            after >= Duration::from_millis(1_300) && after < Duration::from_millis(2_500),
            "{name}: closed after {after:?}, expected the idle timeout (1.5 s)"
        );
    }
}

#[tokio::test]
async fn connections_are_capped_per_address_and_in_all() {
    let (s, _up) = setup(|l| {
        l.header_read_timeout_ms = 10_000;
        l.idle_timeout_ms = 10_000;
        l.max_connections = 3;
        l.max_connections_per_address = 2;
    })
    .await;
    for (name, addr, path) in listeners(&s) {
        let a1 = connect_from("127.0.0.1", addr).await;
        let mut a2 = connect_from("127.0.0.1", addr).await;
        let mut a3 = connect_from("127.0.0.1", addr).await;
        let (closed, got) = closed_within(&mut a3, Duration::from_secs(2)).await;
        assert!(
            closed && got.is_empty(),
            "{name}: the third from one address is closed"
        );
        let mut b1 = connect_from("127.0.0.2", addr).await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, _) = exchange(&mut b1, req.as_bytes()).await;
        assert_eq!(status, 200, "{name}: another address is served");
        let _b2 = connect_from("127.0.0.2", addr).await;
        let mut c1 = connect_from("127.0.0.3", addr).await;
        let (closed, _) = closed_within(&mut c1, Duration::from_secs(2)).await;
        assert!(closed, "{name}: over the total cap");
        let (status, _) = exchange(&mut a2, req.as_bytes()).await;
        assert_eq!(status, 200, "{name}: admitted connections are served");
        drop(a1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut a4 = connect_from("127.0.0.1", addr).await;
        let (status, _) = exchange(&mut a4, req.as_bytes()).await;
        assert_eq!(status, 200, "{name}: a place came free");
    }
    let m = support::gateway::metrics(&s).await;
    assert!(
        m.contains(
            "listener_refused_connections_total{listener=\"api\",reason=\"max_connections_per_address\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "listener_refused_connections_total{listener=\"gateway\",reason=\"max_connections\"} 1"
        ),
        "{m}"
    );
}

/// Sends a head announcing 100 body bytes and 10 of them, then nothing.
async fn stalled_body(addr: SocketAddr, head: &str) -> (u16, String, Duration) {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let req = format!("{head}Content-Length: 100\r\n\r\n{{\"id\": \"ab");
    let (status, body) = exchange(&mut c, req.as_bytes()).await;
    (status, body, started.elapsed())
}

#[tokio::test]
async fn stalled_request_bodies_are_cut_with_408() {
    let (s, _up) = setup(|_| {}).await;
    let auth = format!(
        "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n",
        s.root_secret
    );
    let gateway = "POST /upload/file HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n";
    for (name, addr, head) in [
        ("api", s.addr, auth.as_str()),
        ("gateway", s.gateway_addr.expect("gateway"), gateway),
    ] {
        let (status, body, took) = stalled_body(addr, head).await;
        assert_eq!(status, 408, "{name}: {body}");
        let v: Value = serde_json::from_str(body.trim()).expect("json");
        assert_eq!(v["error"]["code"], "body_timeout", "{name}");
        assert!(took < Duration::from_millis(2_500), "{name}: {took:?}");
    }
    // A slow but steady body (a chunk every 300 ms for 2.4 s) is not cut.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tokio::spawn(async move {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = tx.send(Ok(vec![b'x'; 100])).await;
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let r = s
        .client
        .post(s.gateway_url("/upload/steady"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["body_bytes"], 800);
    let m = support::gateway::metrics(&s).await;
    assert!(
        m.contains("listener_body_timeouts_total{listener=\"api\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("listener_body_timeouts_total{listener=\"gateway\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let (s, _up) = setup(|_| {}).await;
    for (name, addr, path) in listeners(&s) {
        let head = |extra: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n")
        };
        let many: String = (0..80).map(|i| format!("X-H{i}: v\r\n")).collect();
        let some: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
        let large = format!("X-Large: {}\r\n", "a".repeat(20 * 1024));
        for (what, extra, want) in [
            ("40 headers", some, 200),
            ("80 headers", many, 431),
            ("a 20 KiB header", large, 431),
        ] {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let (status, _) = exchange(&mut c, head(&extra).as_bytes()).await;
            assert_eq!(status, want, "{name}: {what}");
        }
    }
}

async fn stream_status(s: &TestServer, query: &str) -> (u16, Option<reqwest::Response>) {
    let r = s
        .client
        .get(s.url(&format!("/v1/events{query}")))
        .bearer_auth(&s.root_secret)
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), Some(r))
}

#[tokio::test]
async fn event_streams_are_capped_per_tenant_and_per_key() {
    let s = spawn_with(|c| {
        c.events.sse.max_per_tenant = 2;
        c.events.sse.max_per_key = 3;
    })
    .await;
    s.tenant("acme").await;
    s.tenant("beta").await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (status, r) = stream_status(&s, "?tenant=acme").await;
        assert_eq!(status, 200);
        open.push(r);
    }
    let (status, r) = stream_status(&s, "?tenant=acme").await;
    assert_eq!(status, 429, "a third stream of acme");
    let r = r.expect("response");
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "too_many_streams");
    let (status, r) = stream_status(&s, "?tenant=beta").await;
    assert_eq!(status, 200, "another tenant");
    open.push(r);
    let (status, _) = stream_status(&s, "").await;
    assert_eq!(status, 429, "a fourth stream of the key");
    open.truncate(1);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (status, r) = stream_status(&s, "?tenant=acme").await;
        if status == 200 {
            drop(r);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed streams give their places back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
