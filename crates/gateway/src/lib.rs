//! portcullis-gateway: a reverse proxy on its own listener that authenticates, authorises, rate-limits
//! and measures every request before it reaches the upstream API (see `docs/gateway.md`).
//!
//! - [`config`]: the `[gateway]` section (upstreams, routes, policies, trusted proxies).
//! - [`runtime`]: that section checked and compiled; swapped as a whole on reload (SIGHUP).
//! - [`path`]: the canonical request path, computed once before routing.
//! - [`proxy`]: the request path; `limits` (rate limits of an admitted key), `send` (to the
//!   upstream and back) and `refusal` (the uniform refusal) are its parts.
//! - [`headers`]: client address, header stripping and forwarding headers.
//! - [`rewrite`]: the headers that could rewrite an authorised request (method overrides, URL
//!   rewrites, forwarding headers) and who may send them.
//! - [`upload`]: streaming body limits and upload measurement.
//! - [`Edge`]: what the gateway listener serves (`portcullis_http::listen`).
//! - `audit`: the audit records of gateway requests.
#![forbid(unsafe_code)]

use std::{net::IpAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use axum::{extract::Request, response::Response};
use portcullis_ratelimit::{FailureTracker, Limiter, Nanos};

use portcullis_service::state::AppState;

mod audit;
pub use portcullis_service::config::gateway as config;
pub mod headers;
mod limits;
pub mod metrics;
pub mod path;
pub mod pool;
pub mod proxy;
mod refusal;
pub mod rewrite;
pub mod runtime;
mod send;
pub mod upload;

pub use config::GatewayConfig;
pub use runtime::{GatewayConfigError, Runtime};

/// The gateway's shared state: the current runtime (swapped on reload), the limiters and the
/// brute-force tracker (kept across reloads).
pub struct Gateway {
    pub app: AppState,
    runtime: ArcSwap<Runtime>,
    /// Per key (and route policy).
    pub keys: Limiter<limits::KeyLimit>,
    /// Per tenant, across its keys.
    pub tenants: Limiter<Arc<str>>,
    /// Failed authentications per client address.
    pub failures: FailureTracker<IpAddr>,
    /// Timeouts and caps of the gateway listener's connections (fixed at start).
    pub connections: portcullis_http::listen::ConnectionLimits,
    upload_sink: std::sync::RwLock<upload::UploadSink>,
    /// The scheme of the gateway listener: `X-Forwarded-Proto` and `Forwarded: proto=` for
    /// clients that are not trusted proxies: `https` when the listener has TLS.
    pub scheme: headers::Scheme,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway from its configuration; an invalid one is refused with a message that
    /// names the entry.
    pub fn new(app: AppState, cfg: &GatewayConfig) -> Result<Arc<Self>, GatewayConfigError> {
        let runtime = Runtime::build(cfg)?.with_metrics(&app.metrics);
        let bf = &cfg.brute_force;
        Ok(Arc::new(Self {
            app,
            runtime: ArcSwap::from_pointee(runtime),
            keys: Limiter::new(cfg.limiter_max_keys),
            tenants: Limiter::new(cfg.limiter_max_keys),
            failures: FailureTracker::new(
                bf.threshold,
                bf.window_seconds,
                bf.cooldown_seconds,
                cfg.limiter_max_keys,
            ),
            connections: cfg.connections.clone(),
            upload_sink: std::sync::RwLock::new(upload::log_sink()),
            scheme: if cfg.tls.is_some() {
                headers::Scheme::Https
            } else {
                headers::Scheme::Http
            },
        }))
    }

    /// Replaces where upload facts are reported (the audit log, a test).
    pub fn set_upload_sink(&self, sink: upload::UploadSink) {
        *self.upload_sink.write().unwrap_or_else(|e| e.into_inner()) = sink;
    }

    /// Where upload facts are reported.
    pub fn upload_sink(&self) -> upload::UploadSink {
        self.upload_sink
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The runtime serving new requests.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Checks `cfg` and, if it is valid, serves new requests with it; requests in flight finish
    /// with the old one. An invalid configuration changes nothing.
    pub fn reload(&self, cfg: &GatewayConfig) -> Result<(), GatewayConfigError> {
        let runtime = Runtime::build(cfg)?.with_metrics(&self.app.metrics);
        let routes = runtime.routes().count();
        self.runtime.store(Arc::new(runtime));
        tracing::info!(routes, "gateway configuration reloaded");
        Ok(())
    }

    /// Now on the limiters' time line: the injected clock's monotonic nanoseconds (full
    /// resolution; wall time in whole seconds would make every limit as strict as its burst).
    pub fn now_nanos(&self) -> Nanos {
        self.app.clock.monotonic_nanos()
    }

    /// Drops limiter state that has gone idle; run periodically.
    pub fn evict_idle(&self) -> usize {
        let now = self.now_nanos();
        self.keys.evict_idle(now) + self.tenants.evict_idle(now) + self.failures.evict_idle(now)
    }

    /// Evicts idle limiter state every `every` until the task is aborted.
    pub fn spawn_evictor(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                gw.evict_idle();
            }
        })
    }
}

/// What the gateway listener serves: every request goes to the proxy, behind the request edge
/// (its id, the refusal of keys in URLs, the panic guard). No router: the gateway routes by its
/// own table ([`runtime`]).
#[derive(Debug, Clone)]
pub struct Edge(pub Arc<Gateway>);

impl portcullis_http::listen::Serve for Edge {
    fn serve(
        &self,
        req: Request,
        peer: std::net::SocketAddr,
    ) -> impl std::future::Future<Output = Response> + Send + use<> {
        let gw = self.0.clone();
        portcullis_http::request_id::around(req, move |req| proxy::handle(gw, peer, req))
    }
}
