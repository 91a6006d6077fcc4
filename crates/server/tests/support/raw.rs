//! Requests sent byte for byte over a fresh TCP connection, so the target and the header names
//! reach the server exactly as written (no client library normalises them).
use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `method target` with `headers` on a connection that closes after the answer; returns
/// the whole answer as text.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    conn.read_to_string(&mut out).await.expect("read");
    out
}

/// A GET of `target`; the whole answer as text.
pub async fn get(addr: SocketAddr, target: &str) -> String {
    exchange(addr, "GET", target, &[]).await
}

/// Like [`exchange`]: (status, the JSON body, or the body as a JSON string if it is not JSON).
/// The answer must have a sized body (not chunked).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let out = exchange(addr, method, target, headers).await;
    let status = out
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{target}: not an HTTP answer: {out}"));
    let (head, body) = out.split_once("\r\n\r\n").expect("head and body");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "a sized body: {head}"
    );
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}
