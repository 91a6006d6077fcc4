//! `portcullis`: run the server, or operate directly on a data directory (bootstrap and
//! recovery), like `vault operator`. Created secrets are printed once to stdout, never logged.
#![forbid(unsafe_code)]

mod audit_cmd;
mod audit_keys;
mod operate;
mod output;
mod root_key;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use portcullis_server::tls::TlsServer;

use clap::{Args, Parser, Subcommand, ValueEnum};
use portcullis_core::clock::{Clock, SystemClock};
use portcullis_server::{
    AppState, Config, audit,
    error::ApiError,
    ops::{Ctx, OpError},
    serve,
};
use portcullis_store::Store;

use crate::{
    operate::{AdminKeyCmd, KeyCmd, TenantCmd, admin_key, key, tenant},
    output::Output,
};

/// mimalloc: the request path allocates many small, short-lived objects; it measured faster than
/// the system allocator in `bench/verify.sh` (see docs/benchmarks.md). The default feature
/// `mimalloc`; without it, the system allocator (for heap profilers).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about = "API-key security gateway")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Output format of operator commands.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Table,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (creates the data directory, the pepper and a root admin key on first start).
    Serve {
        /// Address to listen on (overrides the configuration).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// On first start, write the root admin key's secret to this new file (mode 0600)
        /// instead of stdout. Refused if the file exists; never overwritten.
        #[arg(long, value_name = "PATH")]
        root_key_file: Option<PathBuf>,
    },
    /// Admin keys (global, or bound to one tenant).
    #[command(subcommand)]
    AdminKey(AdminKeyCmd),
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// API keys of a tenant.
    #[command(subcommand)]
    Key(KeyCmd),
    /// The tamper-evident audit log: verify, export, purge.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
}

#[derive(Debug)]
enum Failure {
    Usage(String),
    Api(ApiError),
    /// An operation failed: its stable code and what went wrong.
    Op(OpError),
    /// `audit verify` found a broken point (already printed): exit status 1.
    Broken,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<portcullis_store::StoreError> for Failure {
    fn from(e: portcullis_store::StoreError) -> Self {
        Self::Op(e.into())
    }
}

impl From<OpError> for Failure {
    fn from(e: OpError) -> Self {
        Self::Op(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Api(e)) => {
            eprintln!("error: {}: {}", e.code, e.message);
            ExitCode::FAILURE
        }
        Err(Failure::Op(e)) => {
            eprintln!("error: {}: {e}", e.code());
            ExitCode::FAILURE
        }
        Err(Failure::Broken) => ExitCode::FAILURE,
    }
}

fn load_config(g: &Global) -> Result<Config, Failure> {
    let mut config =
        Config::load(g.config.as_deref()).map_err(|e| Failure::Usage(e.to_string()))?;
    if let Some(d) = &g.data_dir {
        config.data_dir = d.clone();
    }
    Ok(config)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let mut config = load_config(&cli.global)?;
    let out = Output::new(cli.global.output == Format::Json);
    if let Command::Serve {
        listen,
        root_key_file,
    } = cli.command
    {
        if let Some(l) = listen {
            config.listen = l;
        }
        config
            .validate()
            .map_err(|e| Failure::Usage(e.to_string()))?;
        return serve_command(config, cli.global.config.clone(), root_key_file).await;
    }
    // Operator commands log only warnings, to stderr.
    serve::init_logging("text", "warn");
    if let Command::Audit(cmd) = cli.command {
        return audit_cmd::run(&config, &out, cmd).await;
    }
    let dir = portcullis::datadir::open(&config)
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let clock = SystemClock;
    let policy = config.key_policy();
    // Changes are recorded with actor `operator`; the records are written before exiting.
    let audit = open_audit(&config).await?;
    // Key changes are published as events too: a server beside this command serves them.
    let events = open_events(&config).await?;
    let ctx = Ctx {
        actor: audit::OPERATOR,
        audit: &audit,
        store: dir.store.as_ref(),
        pepper: &dir.pepper,
        policy: &policy,
        now: clock.now(),
        cache: None,
        events: Some(&events),
    };
    let result = match cli.command {
        Command::Serve { .. } | Command::Audit(_) => unreachable!("handled above"),
        Command::AdminKey(cmd) => admin_key(ctx, &out, cmd).await,
        Command::Tenant(cmd) => tenant(ctx, &out, cmd).await,
        Command::Key(cmd) => key(ctx, &out, cmd).await,
    };
    let flushed = audit.shutdown(serve::AUDIT_SHUTDOWN_GRACE).await;
    result?;
    flushed.map_err(|e| Failure::Usage(format!("audit log: {e}")))
}

/// Opens the audit log of the data directory (a disabled one when `[audit] enabled = false`).
async fn open_audit(config: &Config) -> Result<audit::AuditLog, Failure> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    portcullis::backends::open_audit(config, clock, Default::default())
        .await
        .map_err(|e| Failure::Usage(format!("audit log: {e}")))
}

/// Opens the configured event backend (a disabled handle when `[events] enabled = false`).
async fn open_events(config: &Config) -> Result<portcullis_server::events::Events, Failure> {
    portcullis::backends::open_events(config)
        .await
        .map_err(|e| Failure::Usage(format!("events: {e}")))
}

async fn serve_command(
    config: Config,
    config_file: Option<PathBuf>,
    root_key_file: Option<PathBuf>,
) -> Result<(), Failure> {
    serve::init_logging(&config.log.format, &config.log.level);
    let dir = portcullis::datadir::open(&config)
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let audit = open_audit(&config).await?;
    let destination = root_key::prepare(dir.store.as_ref(), root_key_file.as_deref()).await?;
    let root = portcullis::datadir::ensure_root_admin(
        dir.store.as_ref(),
        &dir.pepper,
        clock.as_ref(),
        &audit,
    )
    .await
    .map_err(|e| Failure::Usage(e.to_string()))?;
    root_key::deliver(destination, root, &config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    tracing::info!(%addr, tls = config.tls.is_some(), data_dir = %config.data_dir.display(), "portcullis listening");
    let store: Arc<dyn Store> = dir.store;
    let events = open_events(&config).await?;
    let state = AppState::with_audit(&config, store, dir.pepper, clock, audit).with_events(events);
    let gateway = match config.gateway.listen {
        None => None,
        Some(gaddr) => {
            let gateway = portcullis_server::gateway::Gateway::new(state.clone(), &config.gateway)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let listener = tokio::net::TcpListener::bind(gaddr)
                .await
                .map_err(|e| Failure::Usage(format!("cannot listen on {gaddr}: {e}")))?;
            let local = listener
                .local_addr()
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let routes = gateway.runtime().routes().count();
            tracing::info!(addr = %local, routes, tls = config.gateway.tls.is_some(), "portcullis gateway listening");
            Some(serve::GatewayServe {
                listener,
                gateway,
                config_file,
                tls: TlsServer::load_section(config.gateway.tls.as_ref())
                    .map_err(|e| Failure::Usage(e.to_string()))?,
            })
        }
    };
    let api = serve::ApiServe {
        listener,
        tls: TlsServer::load_section(config.tls.as_ref())
            .map_err(|e| Failure::Usage(e.to_string()))?,
    };
    serve::serve_all(api, state, gateway, serve::shutdown_signal())
        .await
        .map_err(|e| Failure::Usage(format!("server error: {e}")))
}
