//! The HTTP/1.1 listeners (admin / verify API and gateway) with their defences against slow and
//! greedy clients: header-read, idle and body-read timeouts, caps on header count and size, and
//! caps on open connections in all and per client address (see [`ConnectionLimits`]).
//!
//! A listener with [`TlsServer`] completes a TLS handshake (within the header-read timeout)
//! before HTTP starts, and adds `Strict-Transport-Security` to its answers.
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

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, header::STRICT_TRANSPORT_SECURITY},
    response::Response,
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{net::TcpListener, sync::watch};

use crate::tls::TlsServer;

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
    /// TLS, or plaintext HTTP when absent.
    pub tls: Option<Arc<TlsServer>>,
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
    tls: Option<Arc<TlsServer>>,
    /// `Strict-Transport-Security` of a TLS listener's answers.
    hsts: Option<HeaderValue>,
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
        hsts: l
            .tls
            .as_ref()
            .and_then(|t| hsts(t.config().hsts_max_age_seconds)),
        tls: l.tls,
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

/// `Strict-Transport-Security` for this max-age; none for 0.
fn hsts(max_age: u64) -> Option<HeaderValue> {
    (max_age > 0).then(|| {
        HeaderValue::try_from(format!("max-age={max_age}"))
            .unwrap_or_else(|_| unreachable!("digits are a valid header value"))
    })
}

/// Serves one connection: its TLS handshake if the listener has TLS, then HTTP under the
/// connection's watchdog.
async fn connection<S: Serve>(
    shared: Arc<Shared<S>>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
    stop: watch::Receiver<bool>,
) {
    shared.open.inc();
    if let Some(g) = &shared.extra_gauge {
        g.inc();
    }
    let activity = Activity::new();
    let watched = Watched::new(stream, activity.clone(), slot);
    match &shared.tls {
        None => drive(&shared, watched, &activity, peer, stop).await,
        Some(tls) => {
            let handshake = tls.acceptor().accept(watched);
            match tokio::time::timeout(shared.timeouts.header, handshake).await {
                Ok(Ok(tls_stream)) => drive(&shared, tls_stream, &activity, peer, stop).await,
                Ok(Err(e)) => handshake_failed(&shared, "tls_handshake", &e),
                Err(_) => handshake_failed(&shared, "tls_handshake_timeout", &"timed out"),
            }
        }
    }
    shared.open.dec();
    if let Some(g) = &shared.extra_gauge {
        g.dec();
    }
}

/// A TLS handshake that failed or ran past the header-read timeout: counted, logged at debug
/// (clients with old protocol versions, scanners and wrong certificates are everyday events).
fn handshake_failed<S>(shared: &Shared<S>, reason: &'static str, e: &dyn std::fmt::Display) {
    shared
        .metrics
        .refused
        .get_or_create(&ListenerReason {
            listener: shared.name,
            reason,
        })
        .inc();
    tracing::debug!(listener = shared.name, reason, error = %e, "connection closed: TLS handshake failed");
}

/// Serves HTTP on one connection under its watchdog.
async fn drive<S: Serve, I>(
    shared: &Arc<Shared<S>>,
    io: I,
    activity: &Arc<Activity>,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service(shared, activity, peer);
    let mut conn = pin!(shared.builder.serve_connection(TokioIo::new(io), service));
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
    let hsts = shared.hsts.clone();
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
        let hsts = hsts.clone();
        async move {
            let mut answer = answer.await;
            if let Some(v) = hsts {
                answer.headers_mut().insert(STRICT_TRANSPORT_SECURITY, v);
            }
            Ok::<_, Infallible>(answer.map(|b| Tracked::new(b, in_flight)))
        }
    })
}
