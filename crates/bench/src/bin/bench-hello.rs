//! `bench-hello`: the axum hello-world baseline. `POST /v1/verify` reads the request body and
//! answers a static JSON document of the size of a real verify answer; `GET /` and `GET /healthz`
//! answer too. No authentication, no parsing, no store: what is left is axum, hyper and tokio.
//! `#[tokio::main]` honours `TOKIO_WORKER_THREADS`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "bench-hello",
    about = "axum hello-world baseline for portcullis benchmarks"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("bench-hello listening on {}", listener.local_addr()?);
    axum::serve(listener, portcullis_bench::hello::router()).await
}
