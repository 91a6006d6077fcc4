//! The HTTP/1.1 listeners (admin / verify API and gateway) with their defences against slow and
//! greedy clients: header-read, idle and body-read timeouts, caps on header count and size, and
//! caps on open connections in all and per client address (see [`ConnectionLimits`]).
//!
//! Each accepted connection runs on its own task under a watchdog that closes it when its
//! current phase (see [`activity`]) outlives its deadline. Shutdown stops accepting, asks every
//! connection to finish its request in progress and close, and waits for them.
pub mod activity;
pub mod body;
pub mod caps;

use std::{
    convert::Infallible, future::Future, net::SocketAddr, pin::pin, sync::Arc, time::Duration,
};

use axum::{body::Body, extract::Request, response::Response};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{net::TcpListener, sync::watch};

use self::{
    activity::{Activity, Timeouts, Watched},
    body::{IdleBody, Tracked},
    caps::{Caps, LogGate, Slot},
};
pub use portcullis_service::config::listen::ConnectionLimits;
pub use portcullis_service::metrics::{ListenerLabel, ListenerMetrics, ListenerReason};

/// What a listener answers: every request of its connections, with the client's socket
/// address. The API and the gateway implement it with their request edge.
pub trait Serve: Send + Sync + 'static {
    fn serve(
        &self,
        req: Request,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + 'static + use<Self>;
}

/// One listener to serve.
#[derive(Debug)]
pub struct Listen<S> {
    /// `api` or `gateway` (metric label and log field).
    pub name: &'static str,
    pub listener: TcpListener,
    /// What answers its requests.
    pub serve: S,
    pub limits: ConnectionLimits,
    pub metrics: ListenerMetrics,
    /// A gauge also counting this listener's open connections (kept for existing dashboards).
    pub extra_gauge: Option<Gauge>,
}

/// Everything a connection task shares with its listener.
struct Shared<S> {
    name: &'static str,
    serve: Arc<S>,
    builder: http1::Builder,
    timeouts: Timeouts,
    body_timeout: Duration,
    metrics: ListenerMetrics,
    open: Gauge,
    extra_gauge: Option<Gauge>,
}

fn builder(limits: &ConnectionLimits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        // The connection's watchdog enforces the head deadline (from the first byte after an
        // idle pause, not from the end of the previous response as hyper would).
        .header_read_timeout(None)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    b
}

/// Serves `l` until `shutdown` resolves, then lets open connections finish their request in
/// progress and waits for them.
pub async fn serve<S: Serve>(l: Listen<S>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let open = l
        .metrics
        .open
        .get_or_create(&ListenerLabel { listener: l.name })
        .clone();
    let caps = Caps::new(
        l.limits.max_connections,
        l.limits.max_connections_per_address,
    );
    let shared = Arc::new(Shared {
        name: l.name,
        serve: Arc::new(l.serve),
        builder: builder(&l.limits),
        timeouts: Timeouts {
            header: l.limits.header_read_timeout(),
            idle: l.limits.idle_timeout(),
        },
        body_timeout: l.limits.body_read_timeout(),
        open,
        metrics: l.metrics,
        extra_gauge: l.extra_gauge,
    });
    let gate = LogGate::new(Duration::from_secs(10));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = l.listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(shared.name, &e).await;
                    continue;
                }
            },
        };
        let slot = match caps.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                refuse(&shared, &gate, cap, peer);
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let task = connection(shared.clone(), stream, peer, slot, stop_rx.clone());
        let done = done_rx.clone();
        tokio::spawn(async move {
            task.await;
            drop(done);
        });
    }
    drop(l.listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
}

fn refuse<S>(shared: &Shared<S>, gate: &LogGate, cap: caps::Refused, peer: SocketAddr) {
    shared
        .metrics
        .refused
        .get_or_create(&ListenerReason {
            listener: shared.name,
            reason: cap.as_str(),
        })
        .inc();
    if let Some(held) = gate.pass() {
        tracing::warn!(
            listener = shared.name,
            cap = cap.as_str(),
            client_ip = %peer.ip(),
            refused_since_last_line = held,
            "connection refused: over a connection cap"
        );
    }
}

/// An accept error: a client that went away is nothing; anything else (such as running out of
/// file descriptors) is logged and accepting pauses for a moment rather than spinning.
async fn accept_failed(name: &str, e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(listener = name, error = %e, "accept failed; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection under its watchdog.
async fn connection<S: Serve>(
    shared: Arc<Shared<S>>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) {
    shared.open.inc();
    if let Some(g) = &shared.extra_gauge {
        g.inc();
    }
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(stream, activity.clone(), slot));
    let service = service(&shared, &activity, peer);
    let mut conn = pin!(shared.builder.serve_connection(io, service));
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(shared.timeouts);
        let expire = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(listener = shared.name, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.changed() => {}
            () = expire => {
                // The deadline of the phase read above; a change since notifies, so it is still
                // the current one when nothing changed.
                if let Some((at, why)) = activity.deadline(shared.timeouts)
                    && at <= tokio::time::Instant::now()
                {
                    shared.metrics.timed_out.get_or_create(&ListenerReason {
                        listener: shared.name,
                        reason: why.as_str(),
                    }).inc();
                    tracing::debug!(listener = shared.name, reason = why.as_str(), "connection closed by its deadline");
                    break;
                }
            }
        }
    }
    shared.open.dec();
    if let Some(g) = &shared.extra_gauge {
        g.dec();
    }
}

/// One connection's service: each request gets a request body with the idle-gap timeout and
/// a response body that keeps the connection busy until it is written.
fn service<S: Serve>(
    shared: &Arc<Shared<S>>,
    activity: &Arc<Activity>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = Response<Tracked<Body>>,
    Error = Infallible,
    Future: Send + 'static,
> + Send
+ 'static {
    let serve = shared.serve.clone();
    let activity = activity.clone();
    let timeout = shared.body_timeout;
    let body_timeouts = shared
        .metrics
        .body_timeouts
        .get_or_create(&ListenerLabel {
            listener: shared.name,
        })
        .clone();
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = activity.begin();
        let req = req.map(|b| Body::new(IdleBody::new(b, timeout, body_timeouts.clone())));
        let answer = serve.serve(req, peer);
        async move { Ok::<_, Infallible>(answer.await.map(|b| Tracked::new(b, in_flight))) }
    })
}
