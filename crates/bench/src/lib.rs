//! Benchmark tools for portcullis: an axum hello-world baseline (`bench-hello`), a closed- or
//! open-loop HTTP/1.1 keep-alive load generator (`bench-load`) and a seeder that fills a data
//! directory with keys for the cache-miss measurement (`bench-seed`).
//!
//! `bench/verify.sh` and `bench/gateway.sh` at the repository root drive them;
//! `docs/benchmarks.md` has the method and the figures.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cpu;
pub mod gateway_report;
pub mod hello;
pub mod http1;
pub mod latency;
pub mod load;
pub mod report;
