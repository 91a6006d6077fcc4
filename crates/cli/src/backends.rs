//! The backends of the embedded default, chosen and opened here and nowhere else: the audit
//! database, the event store (SQLite, or NATS JetStream when configured) and the webhook store.
//! The data directory itself (the key store and the pepper) is [`crate::datadir`].
use std::sync::Arc;

use portcullis_events::{EventBackend, EventError, webhook::WebhookStore};
use portcullis_service::{
    Config,
    audit::{AuditLog, AuditOpenError, start},
    events::{Events, config::EventsBackendKind},
    metrics::AuditMetrics,
};

/// Opens the configured audit database and signing key and starts the writer (a disabled log
/// when `[audit] enabled = false`); see [`start`].
pub async fn open_audit(
    config: &Config,
    clock: Arc<dyn portcullis_core::clock::Clock>,
    metrics: AuditMetrics,
) -> Result<AuditLog, AuditOpenError> {
    if !config.audit.enabled {
        return Ok(AuditLog::disabled());
    }
    let store = portcullis_sqlite::SqliteAuditStore::open(&config.audit_database()).await?;
    start(config, Arc::new(store), clock, metrics).await
}

/// Opening the event backend failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct EventsOpenError(#[from] EventError);

/// Opens the configured backend (a disabled handle when `[events] enabled = false`).
pub async fn open_events(config: &Config) -> Result<Events, EventsOpenError> {
    let c = &config.events;
    if !c.enabled {
        return Ok(Events::disabled());
    }
    let mut webhooks = None;
    let backend: Arc<dyn EventBackend> = match c.backend {
        EventsBackendKind::Sqlite => {
            let store =
                portcullis_sqlite::SqliteEventStore::open(&config.events_database()).await?;
            webhooks = Some(Arc::new(store.webhooks()) as _);
            Arc::new(store)
        }
        EventsBackendKind::Nats => {
            let day = std::time::Duration::from_secs(86_400);
            let nats = portcullis_events::nats::NatsConfig {
                url: c.nats.url.clone(),
                stream: c.nats.stream.clone(),
                subject_prefix: c.nats.subject_prefix.clone(),
                max_age: day * c.retention_days,
                duplicate_window: std::time::Duration::from_secs(c.nats.duplicate_window_seconds),
                ..Default::default()
            };
            Arc::new(portcullis_events::nats::NatsBackend::connect(nats).await?)
        }
    };
    let webhooks = match webhooks {
        Some(w) => w,
        None => open_webhook_store(config).await?,
    };
    Ok(Events::new(backend, c.clone()).with_webhooks(webhooks))
}

/// Opens the webhook store on the events database file of `config` (for a deployment whose
/// events are not kept in that file: the SQLite event store hands out its own).
pub async fn open_webhook_store(config: &Config) -> Result<Arc<dyn WebhookStore>, EventError> {
    portcullis_sqlite::SqliteWebhookStore::open(&config.events_database())
        .await
        .map(|s| Arc::new(s) as Arc<dyn WebhookStore>)
        .map_err(|e| EventError::Backend(e.to_string()))
}
