//! A real upstream API for gateway tests, on 127.0.0.1:0:
//! - any path: answers JSON with what it received (method, path, query, headers, body size and
//!   SHA-256, the peer's port), reading the body as a stream;
//! - `/slow`: answers after 3 s;
//! - `/hang`: never answers; notes when the gateway gives up on it (its future is dropped);
//! - `/chunked`: answers a chunked body of 3 parts;
//! - `/http10`: answers as HTTP/1.0.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::HeaderMap,
    response::IntoResponse,
    routing::any,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, Default)]
pub struct Seen {
    /// Set when a `/hang` request was dropped by the gateway.
    pub hang_dropped: AtomicBool,
    pub hang_started: AtomicBool,
    pub requests: AtomicUsize,
}

#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

struct DropFlag(Arc<Seen>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.hang_dropped.store(true, Ordering::SeqCst);
    }
}

fn headers_json(h: &HeaderMap) -> Value {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in h {
        m.entry(k.as_str().to_owned())
            .or_default()
            .push(v.to_str().unwrap_or("").to_owned());
    }
    json!(m)
}

async fn echo(
    State(seen): State<Arc<Seen>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> axum::response::Response {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return "late".into_response();
        }
        "/hang" => {
            let _flag = DropFlag(seen.clone());
            seen.hang_started.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        "/http10" => {
            let mut resp = "old".into_response();
            *resp.version_mut() = axum::http::Version::HTTP_10;
            return resp;
        }
        "/chunked" => {
            let parts = futures_util::stream::iter(
                ["one,", "two,", "three"]
                    .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p.as_bytes()))),
            );
            return Body::from_stream(parts).into_response();
        }
        _ => {}
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_owned);
    let headers = headers_json(req.headers());
    let mut stream = req.into_body().into_data_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return (axum::http::StatusCode::BAD_REQUEST, "body error").into_response();
        };
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Json(json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_bytes": size,
        "body_sha256": hex::encode(hasher.finalize()),
        "peer_port": peer.port(),
    }))
    .into_response()
}

/// Starts the upstream.
pub async fn start() -> Upstream {
    let seen = Arc::new(Seen::default());
    let app = Router::new().fallback(any(echo)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Upstream { addr, seen }
}
