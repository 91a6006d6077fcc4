//! Events at the HTTP edge: the service's [`Events`] handle ([`portcullis_service::events`]),
//! opened on the configured backend (SQLite or NATS JetStream), the SSE endpoint ([`sse`]) and
//! the webhook API ([`webhooks`]).
use std::sync::Arc;

use portcullis_events::{EventBackend, EventError};
pub use portcullis_service::events::*;

pub mod sse;
pub mod webhooks;

/// Opening the event backend failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct EventsOpenError(#[from] EventError);

/// Opens the configured backend (a disabled handle when `[events] enabled = false`).
pub async fn open(config: &crate::Config) -> Result<Events, EventsOpenError> {
    let c = &config.events;
    if !c.enabled {
        return Ok(Events::disabled());
    }
    let mut webhooks = None;
    let backend: Arc<dyn EventBackend> = match c.backend {
        config::EventsBackendKind::Sqlite => {
            let store =
                portcullis_sqlite::SqliteEventStore::open(&config.events_database()).await?;
            webhooks = Some(Arc::new(store.webhooks()) as _);
            Arc::new(store)
        }
        config::EventsBackendKind::Nats => {
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
        None => webhooks::open_store(config).await?,
    };
    Ok(Events::new(backend, c.clone()).with_webhooks(webhooks))
}
