//! The server side of the tamper-evident audit log (the chains, checkpoints and storage are in
//! `portcullis-audit` and `portcullis-sqlite`).
//!
//! - [`log`]: the [`AuditLog`] handle producers record into; never waits for the disk.
//! - [`writer`]: the task that seals queued records into chains and commits them in batches.
//! - [`records`]: the records of authentication failures, client addresses as kept, and the
//!   `fail_closed` refusal.
//! - [`retention`]: the periodic retention purge.
//! - [`refusals`]: the aggregated gateway refusals of the current window.
//! - [`signing`]: the signing key checked against the log's chain of keys at start-up.
//!
//! What is recorded:
//! - every admin / verify API request and every gateway request with a valid key (or on a public
//!   route): one `request` / `gateway.request` record (kind `request`) with the caller (admin key
//!   id as `actor`, or the tenant key's id as `key_id`), method, route, status, latency, bytes,
//!   client address and the decision with its reason code;
//! - gateway refusals of requests without a valid credential (no route, a bad path, no or a bad
//!   key, a blocked address): counted per client address, reason and window into one
//!   `gateway.refused` record ([`refusals`]), so that such traffic cannot fill the disk;
//! - authentication: a successful one is folded into its request record (`actor` / `key_id`,
//!   `data.auth = "success"`); every failure of the API is *also* a record of its own (kind
//!   `auth`, action `auth.failure`) with the precise reason and the key's non-secret hint, so
//!   failures can be searched by themselves without doubling the records of every allowed
//!   request;
//! - every change (tenants, keys, admin keys) from `ops`, for the HTTP API and the CLI alike, and
//!   gateway configuration reloads: kind `change`, with `before` / `after` (never a secret or
//!   hash);
//! - upload facts of gateway upload routes: a `gateway.upload` record with the same request id.
use std::sync::Arc;

pub mod log;
pub mod records;
pub mod refusals;
pub mod retention;
pub mod signing;
pub(crate) mod writer;

pub use log::{ADMIT_WAIT, AuditError, AuditLog, Episodes, QueuePlace};
pub use portcullis_audit::{Kind, Record};

/// The actor of changes made by the operator CLI.
pub const OPERATOR: &str = "operator";
/// The actor of the root admin key created on first start.
pub const BOOTSTRAP: &str = "bootstrap";

/// Opening the audit log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditOpenError {
    #[error(transparent)]
    Store(#[from] portcullis_audit::AuditStoreError),
    #[error(transparent)]
    Signer(#[from] portcullis_audit::SignerError),
    #[error(transparent)]
    SigningKey(#[from] signing::SigningKeyError),
}

/// Starts the audit log on an opened `store` with the signing key of `key_file` (refused when
/// the key is not the one the log's chain of keys names, see [`signing`]; `database` names the
/// store in messages) and starts the writer. `metrics` are the handles the server's `/metrics`
/// shows: pass `AuditMetrics::default()` and build the server's metrics with
/// [`crate::metrics::Metrics::with_audit`] (or let [`crate::AppState::with_audit`] do it).
pub async fn start(
    config: &crate::Config,
    store: Arc<dyn portcullis_audit::AuditStore>,
    clock: Arc<dyn portcullis_core::clock::Clock>,
    metrics: crate::metrics::AuditMetrics,
) -> Result<AuditLog, AuditOpenError> {
    let database = config.audit_database();
    let key_file = config.audit_signing_key_file();
    let paths = signing::Paths {
        key_file: &key_file,
        database: &database,
    };
    let (signer, _) = signing::load_signer(store.as_ref(), paths).await?;
    Ok(AuditLog::start(
        &config.audit,
        store,
        signer,
        clock,
        metrics,
    ))
}
