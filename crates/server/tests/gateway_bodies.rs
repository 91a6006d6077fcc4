//! Bodies through the gateway: streaming both ways in bounded memory, chunked encoding, upload
//! measurement and size limits, keep-alive.
mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::body::Bytes;
use portcullis_server::gateway::upload::UploadFacts;
use portcullis_testkit::{TestServer, spawn_with};
use reqwest::{Body, Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{
    gateway::{metrics, route},
    upstream::{self, Upstream},
};

async fn setup() -> (TestServer, Upstream, String) {
    let up = upstream::start().await;
    let mut g = support::gateway::config(format!("http://{}", up.addr), 30_000);
    let mut upload = route("upload", "/upload", "main");
    upload.upload = true;
    upload.max_body_bytes = Some(64 * 1024);
    let mut big = route("big", "/big", "main");
    big.max_body_bytes = Some(1 << 31);
    g.routes = vec![upload, big, route("rest", "/", "main")];
    let server = spawn_with(move |c| c.gateway = g).await;
    server.tenant("acme").await;
    let (_, secret) = server
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    (server, up, secret)
}

fn client() -> Client {
    Client::builder().no_proxy().build().expect("client")
}

/// `n` chunks of `size` bytes, produced on the fly (never all in memory).
fn generated(n: usize, size: usize) -> Body {
    let chunk = Bytes::from(vec![b'x'; size]);
    let stream =
        futures_util::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    Body::wrap_stream(stream)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

#[tokio::test]
async fn large_body_streams_in_bounded_memory() {
    let (s, _up, secret) = setup().await;
    let chunks = 8192;
    let size = 128 * 1024; // 1 GiB in all
    let before = rss_bytes();
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let resp = client()
        .post(s.gateway_url("/big/file"))
        .bearer_auth(&secret)
        .body(generated(chunks, size))
        .send()
        .await
        .expect("send");
    sampler.abort();
    let status = resp.status();
    let v: Value = resp.json().await.expect("json");
    assert_eq!(status, 200, "{v}");
    let total = (chunks * size) as u64;
    assert_eq!(v["body_bytes"], total);
    assert!(
        v["headers"].get("content-length").is_none(),
        "chunked on the way in, chunked on the way out"
    );
    let grown = peak.load(Ordering::Relaxed).saturating_sub(before);
    if rss_bytes() > 0 {
        assert!(
            grown < 64 * 1024 * 1024,
            "memory grew by {grown} bytes while streaming {total} bytes"
        );
    }
}

#[tokio::test]
async fn chunked_both_ways() {
    let (s, _up, secret) = setup().await;
    let resp = client()
        .post(s.gateway_url("/echo"))
        .bearer_auth(&secret)
        .body(generated(10, 1000))
        .send()
        .await
        .expect("send");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["body_bytes"], 10_000);
    assert_eq!(
        v["body_sha256"],
        hex::encode(Sha256::digest(vec![b'x'; 10_000]))
    );
    let resp = client()
        .get(s.gateway_url("/chunked"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("text"), "one,two,three");
}

#[tokio::test]
async fn uploads_are_measured_and_limited() {
    let (s, up, secret) = setup().await;
    let facts: Arc<Mutex<Vec<(String, UploadFacts)>>> = Arc::default();
    let sink = facts.clone();
    s.gateway
        .as_ref()
        .expect("gateway")
        .set_upload_sink(Arc::new(move |route, _rid, f| {
            sink.lock().expect("lock").push((route.to_owned(), f));
        }));
    let body = vec![7u8; 50_000];
    let resp = client()
        .post(s.gateway_url("/upload/doc"))
        .bearer_auth(&secret)
        .header("content-type", "application/pdf")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let got = facts.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "upload");
    assert_eq!(got[0].1.bytes, 50_000);
    assert_eq!(got[0].1.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(got[0].1.sha256, Some(hex::encode(Sha256::digest(&body))));
    assert!(got[0].1.complete);

    // Declared too large: refused before anything goes upstream.
    let before = up.seen.requests.load(Ordering::SeqCst);
    let resp = client()
        .post(s.gateway_url("/upload/doc"))
        .bearer_auth(&secret)
        .body(vec![0u8; 70_000])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(up.seen.requests.load(Ordering::SeqCst), before);
    // Streamed without a length: cut off at the limit, 413, the upstream request aborted.
    let resp = client()
        .post(s.gateway_url("/upload/doc"))
        .bearer_auth(&secret)
        .body(generated(100, 1024))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "body_too_large");
    let last = facts.lock().expect("lock").last().cloned().expect("facts");
    assert!(!last.1.complete);
    assert_eq!(last.1.sha256, None);
}

#[tokio::test]
async fn keep_alive_on_both_sides() {
    let (s, _up, secret) = setup().await;
    let c = client();
    let resp = c
        .get(s.gateway_url("/http10"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.version(),
        reqwest::Version::HTTP_11,
        "the client's version is kept"
    );
    let mut ports = Vec::new();
    for _ in 0..5 {
        let v: Value = c
            .get(s.gateway_url("/echo"))
            .bearer_auth(&secret)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        ports.push(v["peer_port"].as_u64().expect("port"));
    }
    ports.dedup();
    assert_eq!(ports.len(), 1, "one pooled upstream connection: {ports:?}");
    let metrics = metrics(&s).await;
    assert!(
        metrics.contains("portcullis_gateway_open_connections 1"),
        "one client connection for five requests: {metrics}"
    );
}
