//! The audit log at the HTTP edge: the service's audit log ([`portcullis_service::audit`]),
//! opened on the SQLite audit database, the record of every API request ([`request`]) and the
//! audit API ([`api`]).
//!
//! - [`request`]: the API's audit middleware (one record per admin / verify API request) and the
//!   `fail_closed` gate in front of the API.
//! - [`api`]: `GET /v1/tenants/{tenant}/audit`.
use std::sync::Arc;

pub use portcullis_service::audit::*;

pub mod api;
pub mod request;

/// Opens the configured audit database and signing key and starts the writer (a disabled log
/// when `[audit] enabled = false`); see [`portcullis_service::audit::start`].
pub async fn open(
    config: &crate::Config,
    clock: Arc<dyn portcullis_core::clock::Clock>,
    metrics: crate::metrics::AuditMetrics,
) -> Result<AuditLog, AuditOpenError> {
    if !config.audit.enabled {
        return Ok(AuditLog::disabled());
    }
    let store = portcullis_sqlite::SqliteAuditStore::open(&config.audit_database()).await?;
    start(config, Arc::new(store), clock, metrics).await
}
