//! `portcullis`: run the server, or operate directly on a data directory (bootstrap and
//! recovery), like `vault operator`. Created secrets are printed once to stdout, never logged.
#![forbid(unsafe_code)]

mod audit_cmd;
mod audit_keys;
mod output;
mod root_key;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Args, Parser, Subcommand, ValueEnum};
use portcullis_core::{
    ExposeSecret,
    clock::{Clock, SystemClock},
    error::ValidationError,
    ids,
    ratelimit::RateLimit,
    request::{CreateAdminKey, CreateKey, CreateTenant, Rfc3339, RollKey},
    tenant::{Environment, TenantId},
};
use portcullis_server::{
    AppState, Config, audit, datadir,
    error::ApiError,
    ops::{self, Ctx},
    serve,
};
use portcullis_store::{KeyFilter, PageRequest, Store};
use serde_json::json;

use crate::output::Output;

/// mimalloc: the request path allocates many small, short-lived objects; it measured faster than
/// the system allocator in `bench/verify.sh` (see docs/benchmarks.md).
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

#[derive(Debug, Subcommand)]
enum AdminKeyCmd {
    /// Create an admin key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Bind the key to one tenant (default: global).
        #[arg(long)]
        tenant: Option<String>,
        /// Admin scopes (comma-separated or repeated); default: all admin scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// List admin keys.
    List,
    /// Revoke an admin key.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum TenantCmd {
    /// Create a tenant.
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// Key prefix (keys look like `{prefix}_live_…`); default `sk`.
        #[arg(long)]
        key_prefix: Option<String>,
        /// Maximum lifetime of the tenant's keys, in seconds.
        #[arg(long)]
        max_key_lifetime_seconds: Option<i64>,
        /// Limit of all the tenant's keys together: REQUESTS/SECONDS, or REQUESTS/SECONDS:BURST
        /// (burst defaults to REQUESTS), e.g. 1000/60.
        #[arg(long, value_name = "REQUESTS/SECONDS[:BURST]", value_parser = parse_rate_limit)]
        rate_limit: Option<RateLimit>,
        /// Ceiling of the scopes of the tenant's keys: patterns (comma-separated or repeated),
        /// e.g. invoices:*,files:read. Default: no ceiling.
        #[arg(long, value_delimiter = ',')]
        allowed_scopes: Option<Vec<String>>,
        /// Ceiling of a key's own limit: REQUESTS/SECONDS[:BURST]. Keys created without a limit
        /// get this one. Default: no ceiling.
        #[arg(long, value_name = "REQUESTS/SECONDS[:BURST]", value_parser = parse_rate_limit)]
        max_key_rate_limit: Option<RateLimit>,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_env)]
        environment: Environment,
        /// Scopes (comma-separated or repeated), e.g. invoices:read. Default: none.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Expiry (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
        /// Allowed client addresses / CIDRs (comma-separated or repeated).
        #[arg(long = "ip", value_delimiter = ',')]
        ip_allowlist: Vec<String>,
        /// The vendor's id of the customer.
        #[arg(long)]
        external_id: Option<String>,
        /// The key's own limit: REQUESTS/SECONDS, or REQUESTS/SECONDS:BURST (burst defaults to
        /// REQUESTS), e.g. 100/60:20. It applies with the route's rate-limit policy (the stricter
        /// wins); without one, the tenant's max_key_rate_limit (if any) is the key's limit.
        #[arg(long, value_name = "REQUESTS/SECONDS[:BURST]", value_parser = parse_rate_limit)]
        rate_limit: Option<RateLimit>,
    },
    /// List a tenant's keys.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_parser = parse_env)]
        environment: Option<Environment>,
        /// Only revoked (true) or only unrevoked (false) keys.
        #[arg(long)]
        revoked: Option<bool>,
    },
    /// Show one key.
    Show {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Give a key a new secret; the old one keeps working for the grace period.
    Roll {
        #[arg(long)]
        tenant: String,
        id: String,
        /// Seconds the old secret keeps working (0 to 604800; default 86400).
        #[arg(long)]
        grace_seconds: Option<i64>,
    },
    /// Revoke a key at once.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

fn parse_env(s: &str) -> Result<Environment, String> {
    Environment::parse(s).ok_or_else(|| "environment must be live or test".to_owned())
}

fn parse_rate_limit(s: &str) -> Result<RateLimit, String> {
    s.parse().map_err(|e| match e {
        ValidationError::InvalidRateLimit(m) => m.to_owned(),
        other => other.to_string(),
    })
}

#[derive(Debug)]
enum Failure {
    Usage(String),
    Api(ApiError),
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
        Self::Api(e.into())
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
    let dir = datadir::open(&config)
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
    audit::open(config, clock, Default::default())
        .await
        .map_err(|e| Failure::Usage(format!("audit log: {e}")))
}

/// Opens the configured event backend (a disabled handle when `[events] enabled = false`).
async fn open_events(config: &Config) -> Result<portcullis_server::events::Events, Failure> {
    portcullis_server::events::open(config)
        .await
        .map_err(|e| Failure::Usage(format!("events: {e}")))
}

async fn serve_command(
    config: Config,
    config_file: Option<PathBuf>,
    root_key_file: Option<PathBuf>,
) -> Result<(), Failure> {
    serve::init_logging(&config.log.format, &config.log.level);
    let dir = datadir::open(&config)
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let audit = open_audit(&config).await?;
    let destination = root_key::prepare(dir.store.as_ref(), root_key_file.as_deref()).await?;
    let root = datadir::ensure_root_admin(dir.store.as_ref(), &dir.pepper, clock.as_ref(), &audit)
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?;
    root_key::deliver(destination, root, &config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "portcullis listening");
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
            tracing::info!(addr = %local, routes, "portcullis gateway listening");
            Some(serve::GatewayServe {
                listener,
                gateway,
                config_file,
            })
        }
    };
    serve::serve_all(listener, state, gateway, serve::shutdown_signal())
        .await
        .map_err(|e| Failure::Usage(format!("server error: {e}")))
}

/// Reads every page of a listing.
async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, Failure>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = portcullis_store::Result<portcullis_store::Page<T>>>,
{
    let mut all = Vec::new();
    let mut page = PageRequest {
        after: None,
        limit: 100,
    };
    loop {
        let p = fetch(page.clone()).await?;
        all.extend(p.items);
        match p.next_cursor {
            Some(c) => page.after = Some(c),
            None => return Ok(all),
        }
    }
}

fn tenant_id(s: &str) -> Result<TenantId, Failure> {
    TenantId::parse(s).map_err(|e| Failure::Api(e.into()))
}

fn key_id(s: &str) -> Result<&str, Failure> {
    if ids::is_id("key", s) {
        Ok(s)
    } else {
        Err(Failure::Api(ApiError::not_found()))
    }
}

async fn admin_key(ctx: Ctx<'_>, out: &Output, cmd: AdminKeyCmd) -> Result<(), Failure> {
    match cmd {
        AdminKeyCmd::Create {
            name,
            tenant,
            scopes,
        } => {
            let input = CreateAdminKey {
                name,
                tenant_id: tenant,
                scopes,
            };
            let new = ops::create_admin_key(ctx, input).await?;
            out.created(
                json!({"admin_key": new.key, "secret": new.secret.expose_secret()}),
                new.secret.expose_secret(),
            );
        }
        AdminKeyCmd::List => out.list(
            &ctx.store.list_admin_keys().await?,
            &["id", "name", "tenant_id", "scopes", "hint", "revoked_at"],
        ),
        AdminKeyCmd::Revoke { id } => out.one(&ops::revoke_admin_key(ctx, &id).await?),
    }
    Ok(())
}

async fn tenant(ctx: Ctx<'_>, out: &Output, cmd: TenantCmd) -> Result<(), Failure> {
    match cmd {
        TenantCmd::Create {
            id,
            name,
            key_prefix,
            max_key_lifetime_seconds,
            rate_limit,
            allowed_scopes,
            max_key_rate_limit,
        } => {
            let t = ops::create_tenant(
                ctx,
                CreateTenant {
                    id,
                    name,
                    key_prefix,
                    max_key_lifetime_seconds,
                    rate_limit: rate_limit.map(Into::into),
                    allowed_scopes,
                    max_key_rate_limit: max_key_rate_limit.map(Into::into),
                },
            )
            .await?;
            out.one(&t);
        }
        TenantCmd::List => {
            let all = all_pages(|page| async move { ctx.store.list_tenants(&page).await }).await?;
            out.list(
                &all,
                &[
                    "id",
                    "name",
                    "status",
                    "key_prefix",
                    "max_key_lifetime_seconds",
                    "rate_limit",
                    "allowed_scopes",
                    "max_key_rate_limit",
                ],
            );
        }
    }
    Ok(())
}

async fn key(ctx: Ctx<'_>, out: &Output, cmd: KeyCmd) -> Result<(), Failure> {
    match cmd {
        KeyCmd::Create {
            tenant,
            name,
            environment,
            scopes,
            expires_at,
            ip_allowlist,
            external_id,
            rate_limit,
        } => {
            let expires_at = expires_at
                .map(|s| {
                    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                        .map(Rfc3339)
                        .map_err(|_| Failure::Usage("--expires-at must be an RFC 3339 time".into()))
                })
                .transpose()?;
            let input = CreateKey {
                name,
                environment,
                scopes,
                expires_at,
                ip_allowlist,
                metadata: None,
                external_id,
                rate_limit: rate_limit.map(Into::into),
            };
            let new = ops::create_key(ctx, &tenant_id(&tenant)?, input).await?;
            out.created(
                json!({"key": new.key, "secret": new.secret.expose_secret()}),
                new.secret.expose_secret(),
            );
        }
        KeyCmd::List {
            tenant,
            environment,
            revoked,
        } => {
            let t = tenant_id(&tenant)?;
            ops::load_tenant(ctx.store, &t).await?;
            let filter = KeyFilter {
                environment,
                revoked,
                external_id: None,
            };
            let filter = &filter;
            let t = &t;
            let all = all_pages(|page| async move { ctx.store.list_keys(t, filter, &page).await })
                .await?;
            out.list(
                &all,
                &[
                    "id",
                    "name",
                    "environment",
                    "hint",
                    "scopes",
                    "expires_at",
                    "revoked_at",
                    "last_used_at",
                    "rate_limit",
                ],
            );
        }
        KeyCmd::Show { tenant, id } => {
            let k = ctx
                .store
                .get_key(&tenant_id(&tenant)?, key_id(&id)?)
                .await?
                .ok_or_else(ApiError::not_found)?;
            out.one(&k);
        }
        KeyCmd::Roll {
            tenant,
            id,
            grace_seconds,
        } => {
            let r = ops::roll_key(
                ctx,
                &tenant_id(&tenant)?,
                key_id(&id)?,
                RollKey { grace_seconds },
            )
            .await?;
            out.created(
                json!({"key": r.key, "secret": r.secret.expose_secret(), "previous_secret_expires_at": r.previous_secret_expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()}),
                r.secret.expose_secret(),
            );
        }
        KeyCmd::Revoke { tenant, id } => {
            out.one(&ops::revoke_key(ctx, &tenant_id(&tenant)?, key_id(&id)?).await?);
        }
    }
    Ok(())
}
