//! `portcullis audit verify | export | purge | public-key | rotate-signing-key`: the audit log,
//! read and maintained directly on the data directory (also while a server runs on it).
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use portcullis_audit::{
    AuditFilter, Decision, Kind, Record, SYSTEM_CHAIN,
    export::{Format as ExportFormat, export},
    record::micros,
    verify_store,
};
use portcullis_core::{clock::Clock, tenant::TenantId};
use portcullis_server::{Config, audit};
use portcullis_sqlite::SqliteAuditStore;
use serde_json::json;
use time::OffsetDateTime;

use crate::{Failure, audit_keys, output::Output};

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the chains: numbering, links, hashes, query columns and every checkpoint signature.
    /// Exits 1 and names the first broken point when the log was tampered with.
    Verify {
        /// Only this tenant's chain (`_system` for records of no tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// First sequence number to verify.
        #[arg(long)]
        from: Option<u64>,
        /// Last sequence number to verify.
        #[arg(long)]
        to: Option<u64>,
        /// The log's first (root) signing key as kept out of band: 64 hex characters, or a file
        /// holding them. The stored chain of keys must start with it, or verification fails.
        /// Without it the chain is trusted as stored (its fingerprints are printed to compare).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Stream a tenant's records to stdout, oldest first, in constant memory.
    Export(ExportArgs),
    /// Remove entries older than the retention window now (what the server does every
    /// `audit.purge_interval_seconds`).
    Purge {
        /// Only this tenant's chain.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Print the signing key's public key (hex) and fingerprint, and the log's first (root)
    /// public key: the one to keep out of band for `audit verify --public-key`.
    PublicKey,
    /// Replace the signing key: a new key, and a hand-over in the audit log in which the
    /// current key signs the new public key. Stop the server first (it signs with the key it
    /// started with until restarted).
    RotateSigningKey,
}

/// The arguments of `audit export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The tenant (`_system` for records of no tenant).
    #[arg(long)]
    tenant: String,
    /// From this time on (RFC 3339, inclusive).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (RFC 3339, exclusive).
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    key_id: Option<String>,
    #[arg(long)]
    action: Option<String>,
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    #[arg(long, value_enum)]
    decision: Option<DecisionArg>,
    #[arg(long, value_enum, default_value_t = FormatArg::Ndjson)]
    format: FormatArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Ndjson,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Request,
    Auth,
    Change,
    Maintenance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecisionArg {
    Allow,
    Deny,
}

fn usage(m: impl std::fmt::Display) -> Failure {
    Failure::Usage(m.to_string())
}

/// A chain name given on the command line: a tenant id, or `_system`.
fn chain_arg(s: &str) -> Result<String, Failure> {
    if s == SYSTEM_CHAIN {
        return Ok(s.to_owned());
    }
    TenantId::parse(s)
        .map(|t| t.as_str().to_owned())
        .map_err(|e| Failure::Api(e.into()))
}

fn time_arg(name: &str, s: Option<&str>) -> Result<Option<i64>, Failure> {
    s.map(|s| {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(micros)
            .map_err(|_| usage(format!("--{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// The path of the audit database, which must exist (it is never created here).
fn existing_database(config: &Config) -> Result<std::path::PathBuf, Failure> {
    let path = config.audit_database();
    if !path.exists() {
        return Err(usage(format!(
            "no audit log at {} (the server creates it on first start)",
            path.display()
        )));
    }
    Ok(path)
}

/// Opens the existing audit database.
async fn open_store(config: &Config) -> Result<SqliteAuditStore, Failure> {
    SqliteAuditStore::open(&existing_database(config)?)
        .await
        .map_err(|e| usage(format!("audit log: {e}")))
}

/// Runs an audit command. Export and purge record what they did in the audit log itself.
pub async fn run(config: &Config, out: &Output, cmd: AuditCmd) -> Result<(), Failure> {
    match cmd {
        AuditCmd::PublicKey => {
            let store = match config.audit_database().exists() {
                true => Some(open_store(config).await?),
                false => None,
            };
            audit_keys::public_key(config, store.as_ref(), out).await
        }
        AuditCmd::RotateSigningKey => {
            let store = open_store(config).await?;
            let rotated = audit_keys::rotate(config, &store).await;
            store.close().await;
            let (old, new) = rotated?;
            out.one(&json!({"previous": old, "current": new}));
            let r = maintenance(SYSTEM_CHAIN, "audit.signing_key.rotate")
                .with("previous", old)
                .with("current", new);
            record(config, vec![r]).await
        }
        AuditCmd::Verify {
            tenant,
            from,
            to,
            public_key,
        } => verify(config, out, tenant, from, to, public_key).await,
        AuditCmd::Export(args) => export_records(config, args).await,
        AuditCmd::Purge { tenant } => purge(config, out, tenant).await,
    }
}

/// `audit export`: one chain's records, filtered, to stdout; the export is itself recorded.
async fn export_records(config: &Config, args: ExportArgs) -> Result<(), Failure> {
    let ExportArgs {
        tenant,
        since,
        until,
        key_id,
        action,
        kind,
        decision,
        format,
    } = args;
    let chain = chain_arg(&tenant)?;
    let filter = AuditFilter {
        since_micros: time_arg("since", since.as_deref())?,
        until_micros: time_arg("until", until.as_deref())?,
        key_id,
        action,
        kind: kind.map(|k| match k {
            KindArg::Request => Kind::Request,
            KindArg::Auth => Kind::Auth,
            KindArg::Change => Kind::Change,
            KindArg::Maintenance => Kind::Maintenance,
        }),
        decision: decision.map(|d| match d {
            DecisionArg::Allow => Decision::Allow,
            DecisionArg::Deny => Decision::Deny,
        }),
    };
    let format = match format {
        FormatArg::Ndjson => ExportFormat::Ndjson,
        FormatArg::Csv => ExportFormat::Csv,
    };
    let store = open_store(config).await?;
    let count = export(&store, &chain, &filter, format, std::io::stdout().lock())
        .await
        .map_err(|e| usage(format!("export: {e}")))?;
    let mut r = maintenance(&chain, "audit.export")
        .with("count", count)
        .with("format", format!("{format:?}").to_lowercase());
    for (name, v) in [("since", &since), ("until", &until)] {
        if let Some(v) = v {
            r = r.with(name, v.as_str());
        }
    }
    record(config, vec![r]).await
}

/// `audit purge`: removes what retention allows, of every chain or of one tenant's.
async fn purge(config: &Config, out: &Output, tenant: Option<String>) -> Result<(), Failure> {
    let only = tenant.as_deref().map(chain_arg).transpose()?;
    existing_database(config)?;
    let log = open_log(config).await?;
    let report = audit::retention::purge(
        &log,
        &config.audit,
        OffsetDateTime::now_utc(),
        only.as_deref(),
        audit::OPERATOR,
    )
    .await
    .map_err(|e| usage(format!("audit log: {e}")));
    let closed = close_log(log).await;
    let report = report?;
    closed?;
    out.list(&report.purged, &["chain", "removed", "through_seq"]);
    match report.failed.first() {
        None => Ok(()),
        Some((chain, why)) => Err(usage(format!("purge of {chain}: {why}"))),
    }
}

fn maintenance(chain: &str, action: &str) -> Record {
    let mut r = Record::new(
        portcullis_core::clock::SystemClock.now(),
        Kind::Maintenance,
        action,
    );
    r.tenant = (chain != SYSTEM_CHAIN).then(|| chain.to_owned());
    r.actor = Some(audit::OPERATOR.to_owned());
    r
}

async fn open_log(config: &Config) -> Result<audit::AuditLog, Failure> {
    let clock: Arc<dyn Clock> = Arc::new(portcullis_core::clock::SystemClock);
    portcullis::backends::open_audit(config, clock, Default::default())
        .await
        .map_err(|e| usage(format!("audit log: {e}")))
}

/// Waits until everything recorded is committed, and stops the writer.
async fn close_log(log: audit::AuditLog) -> Result<(), Failure> {
    log.shutdown(portcullis_server::serve::AUDIT_SHUTDOWN_GRACE)
        .await
        .map_err(|e| usage(format!("audit log: {e}")))
}

/// Writes `records` through the audit log (so the chains stay in order beside a running
/// server) and waits until they are committed.
async fn record(config: &Config, records: Vec<Record>) -> Result<(), Failure> {
    let log = open_log(config).await?;
    for r in records {
        log.record(r);
    }
    close_log(log).await
}

async fn verify(
    config: &Config,
    out: &Output,
    tenant: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    public_key: Option<String>,
) -> Result<(), Failure> {
    let store = open_store(config).await?;
    let trust = match audit_keys::trust(config, &store, public_key.as_deref()).await? {
        Ok(trust) => trust,
        Err(broken) => return report_broken(out, None, &broken),
    };
    let chains = tenant
        .as_deref()
        .map(chain_arg)
        .transpose()?
        .map(|c| vec![c]);
    let result = verify_store(&store, &trust.chain, chains.as_deref(), from, to)
        .await
        .map_err(|e| usage(format!("audit log: {e}")))?;
    match result {
        Ok(reports) => {
            let entries: u64 = reports.iter().map(|r| r.entries).sum();
            if out.is_json() {
                out.one(&json!({
                    "intact": true, "entries": entries, "chains": reports, "signing_keys": trust,
                }));
            } else {
                trust.print();
                out.list(
                    &reports,
                    &[
                        "chain",
                        "first_seq",
                        "last_seq",
                        "entries",
                        "checkpoints",
                        "retention_anchor",
                        "unsigned_tail",
                    ],
                );
                println!(
                    "\nintact: {} chain(s), {entries} entries verified",
                    reports.len()
                );
            }
            Ok(())
        }
        Err(broken) => report_broken(out, Some(&trust), &broken),
    }
}

/// Prints a broken point (with the keys trusted, when known) and fails.
fn report_broken(
    out: &Output,
    trust: Option<&audit_keys::Trust>,
    broken: &portcullis_audit::Break,
) -> Result<(), Failure> {
    if out.is_json() {
        out.one(&json!({"intact": false, "break": broken, "signing_keys": trust}));
    } else {
        if let Some(t) = trust {
            t.print();
        }
        println!("BROKEN: {broken}");
    }
    Err(Failure::Broken)
}
