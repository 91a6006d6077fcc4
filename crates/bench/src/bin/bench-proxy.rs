//! `bench-proxy`: the floor of a hyper-based reverse proxy, for the gateway benchmark. axum on the
//! client side, hyper-util's pooled client to the upstream (the same client set-up as the
//! portcullis gateway), and nothing else: no authentication, no limits, no header rewriting, no
//! metrics, no logging. What portcullis adds on top of this is portcullis' own cost; what this
//! costs over nginx is the cost of the HTTP stack. `#[tokio::main]` honours
//! `TOKIO_WORKER_THREADS`.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
};
use clap::Parser;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

#[derive(Debug, Parser)]
#[command(
    name = "bench-proxy",
    about = "bare hyper reverse proxy: the floor of the gateway benchmark"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18190")]
    listen: SocketAddr,
    /// The upstream, `host:port`.
    #[arg(long, default_value = "127.0.0.1:18180")]
    upstream: SocketAddr,
}

struct Proxy {
    client: Client<HttpConnector, Body>,
    upstream: String,
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{}{path}", p.upstream).parse::<Uri>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    parts.uri = uri;
    match p
        .client
        .request(axum::http::Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => resp.map(Body::new),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(connector);
    let proxy = Arc::new(Proxy {
        client,
        upstream: args.upstream.to_string(),
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(forward)
        .with_state(proxy);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("bench-proxy listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
