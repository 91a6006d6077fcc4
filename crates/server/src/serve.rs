//! Running the server: bind, serve, shut down gracefully, flush pending usage.
use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use tokio::net::TcpListener;

pub use crate::logging::init_logging;

use crate::{
    app,
    gateway::{self, Gateway},
    listen::{self, Listen},
    state::AppState,
    tls::TlsServer,
};

/// Serves `state` on `listener` (plaintext HTTP) until `shutdown` resolves, then drains
/// connections and writes pending last-used times.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let api = ApiServe {
        listener,
        tls: None,
    };
    serve_all(api, state, None, shutdown).await
}

/// The admin / verify API's listener and its TLS (plaintext HTTP when absent).
#[derive(Debug)]
pub struct ApiServe {
    pub listener: TcpListener,
    pub tls: Option<Arc<TlsServer>>,
}

/// The gateway part of a server: its listener, its state, and the configuration file it
/// re-reads on SIGHUP.
#[derive(Debug)]
pub struct GatewayServe {
    pub listener: TcpListener,
    pub gateway: Arc<Gateway>,
    pub config_file: Option<PathBuf>,
    /// TLS of the gateway listener (plaintext HTTP when absent).
    pub tls: Option<Arc<TlsServer>>,
}

/// Serves the admin / verify API on `listener` and, when given, the gateway on its own listener,
/// until `shutdown` resolves; then drains both and writes pending last-used times.
pub async fn serve_all(
    api: ApiServe,
    state: AppState,
    gateway: Option<GatewayServe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let flusher = state
        .usage
        .spawn_flusher(state.store.clone(), state.metrics.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let events = state.events.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Open event streams never end by themselves: end them so the drain can finish.
        events.close_streams();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = portcullis_service::tasks::spawn(&state);
    let gateway_server = gateway.map(|g| {
        tasks.push(g.gateway.spawn_evictor(Duration::from_secs(10)));
        #[cfg(unix)]
        tasks.push(spawn_reloader(g.gateway.clone(), g.config_file.clone()));
        tasks.extend(g.tls.as_ref().map(|t| t.spawn_watcher("gateway")));
        let listen = Listen {
            name: "gateway",
            listener: g.listener,
            limits: g.gateway.connections.clone(),
            serve: gateway::Edge(g.gateway),
            metrics: state.metrics.listeners.clone(),
            extra_gauge: Some(state.metrics.gateway_open_connections.clone()),
            tls: g.tls,
        };
        tokio::spawn(listen::serve(listen, stopped(stop_rx.clone())))
    });
    tasks.extend(api.tls.as_ref().map(|t| t.spawn_watcher("api")));
    let api = Listen {
        name: "api",
        listener: api.listener,
        tls: api.tls,
        limits: state.connections.clone(),
        serve: app::Api::new(state.clone()),
        metrics: state.metrics.listeners.clone(),
        extra_gauge: None,
    };
    listen::serve(api, stopped(stop_rx)).await;
    let result: std::io::Result<()> = Ok(());
    let gateway_result = match gateway_server {
        Some(h) => h.await.map_err(std::io::Error::other),
        None => Ok(()),
    };
    for t in tasks {
        t.abort();
    }
    flusher.abort();
    state
        .usage
        .flush(state.store.as_ref(), &state.metrics)
        .await;
    if let Err(e) = state.audit.shutdown(AUDIT_SHUTDOWN_GRACE).await {
        tracing::error!(error = %e, "audit records queued at shutdown were not all written");
    }
    result.and(gateway_result)
}

/// How long shutdown waits for queued audit records to be written.
pub const AUDIT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Re-reads the configuration file and swaps in its `[gateway]` section, recording the attempt
/// in the audit log (`config.reload`, chain `_system`, with the file's path and SHA-256).
pub fn reload_gateway(gw: &Gateway, file: Option<&std::path::Path>) -> Result<(), String> {
    let result = crate::Config::load(file)
        .map_err(|e| e.to_string())
        .and_then(|c| gw.reload(&c.gateway).map_err(|e| e.to_string()));
    let digest = file.and_then(|f| std::fs::read(f).ok()).map(|bytes| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
    });
    let mut r = crate::audit::Record::new(
        gw.app.clock.now(),
        crate::audit::Kind::Change,
        "config.reload",
    );
    r.actor = Some(crate::audit::OPERATOR.to_owned());
    r.decision = Some(if result.is_ok() {
        portcullis_audit::Decision::Allow
    } else {
        portcullis_audit::Decision::Deny
    });
    r.reason = result
        .as_ref()
        .err()
        .map(|_| "invalid_configuration".to_owned());
    r = r
        .with("result", if result.is_ok() { "ok" } else { "refused" })
        .with(
            "config_file",
            file.map(|f| f.display().to_string())
                .map_or(serde_json::Value::Null, Into::into),
        )
        .with("sha256", digest.map_or(serde_json::Value::Null, Into::into));
    gw.app.audit.record(r);
    result
}

/// On SIGHUP, re-reads the configuration file and swaps in its `[gateway]` section; an invalid
/// file is refused with a log line and the running configuration keeps serving.
#[cfg(unix)]
fn spawn_reloader(gw: Arc<Gateway>, file: Option<PathBuf>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP: configuration reload disabled");
            return;
        };
        while hup.recv().await.is_some() {
            match reload_gateway(&gw, file.as_deref()) {
                Ok(()) => {}
                Err(e) => tracing::error!(
                    error = %e,
                    "configuration reload refused; the running configuration keeps serving"
                ),
            }
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
