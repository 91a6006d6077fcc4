//! The server side of events: the [`Events`] handle that changes and detectors publish through,
//! and the periodic tasks (retention, key expiry).
//!
//! Key changes (`key.created`, `key.updated`, `key.rolled`, `key.revoked`) are published by
//! `ops` *after* their store transaction committed, and the change's response waits for the
//! publish: an acknowledged change has its event stored (a failed publish is logged and counted
//! in `portcullis_events_publish_failures`; the change itself stands).
use std::sync::Arc;

use portcullis_core::tenant::TenantId;
use portcullis_events::{Event, EventBackend, EventError, EventType, NewEvent};
use time::OffsetDateTime;

pub mod anomaly;
pub mod audit_health;
pub use crate::config::events as config;
pub mod expiry;
pub mod streams;
pub mod webhooks;

pub use config::{EventsBackendKind, EventsConfig};

/// The non-secret facts of a key that key events carry.
pub fn key_data(key: &portcullis_core::model::ApiKey) -> serde_json::Value {
    let rfc3339 = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    serde_json::json!({
        "key_id": key.id,
        "name": key.name,
        "environment": key.environment,
        "hint": key.hint,
        "scopes": key.scopes,
        "expires_at": key.expires_at.and_then(rfc3339),
    })
}

pub use crate::metrics::EventsMetrics;

/// Where the server publishes events: a backend, or nothing when `[events] enabled = false`.
#[derive(Debug, Clone, Default)]
pub struct Events {
    backend: Option<Arc<dyn EventBackend>>,
    config: Option<Arc<EventsConfig>>,
    pub metrics: EventsMetrics,
    /// The open SSE streams (`GET /v1/events`).
    streams: streams::Streams,
    /// Webhook endpoints and deliveries (in the events database, whichever the backend).
    webhooks: Option<Arc<dyn portcullis_events::webhook::WebhookStore>>,
    /// The same store once its secrets are sealed ([`Events::sealing_webhooks`]).
    sealed: Option<Arc<webhooks::sealed::SealedWebhookStore>>,
}

impl Events {
    /// Events are not kept: publishing does nothing, the SSE endpoint answers 404.
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn new(backend: Arc<dyn EventBackend>, config: EventsConfig) -> Self {
        Self {
            backend: Some(backend),
            config: Some(Arc::new(config)),
            metrics: EventsMetrics::default(),
            streams: streams::Streams::default(),
            webhooks: None,
            sealed: None,
        }
    }

    /// The handle with `store` for webhook endpoints and deliveries.
    pub fn with_webhooks(
        mut self,
        store: Arc<dyn portcullis_events::webhook::WebhookStore>,
    ) -> Self {
        self.webhooks = Some(store);
        self.sealed = None;
        self
    }

    /// The handle whose webhook store seals endpoint secrets under a key derived from
    /// `pepper` (done by [`crate::AppState::with_events`]; a second call changes nothing).
    pub fn sealing_webhooks(mut self, pepper: &portcullis_core::hash::Pepper) -> Self {
        if self.sealed.is_none()
            && let Some(inner) = self.webhooks.take()
        {
            let sealed = Arc::new(webhooks::sealed::SealedWebhookStore::new(inner, pepper));
            self.webhooks = Some(sealed.clone());
            self.sealed = Some(sealed);
        }
        self
    }

    /// The sealing webhook store (none before [`Events::sealing_webhooks`]).
    pub fn sealed_webhooks(&self) -> Option<&Arc<webhooks::sealed::SealedWebhookStore>> {
        self.sealed.as_ref()
    }

    /// The webhook store (none when events are disabled).
    pub fn webhooks(&self) -> Option<&Arc<dyn portcullis_events::webhook::WebhookStore>> {
        self.webhooks.as_ref()
    }

    pub fn backend(&self) -> Option<&Arc<dyn EventBackend>> {
        self.backend.as_ref()
    }

    pub fn config(&self) -> Option<&EventsConfig> {
        self.config.as_deref()
    }

    pub fn metrics(&self) -> &EventsMetrics {
        &self.metrics
    }

    /// The open SSE streams and their caps.
    pub fn streams(&self) -> &streams::Streams {
        &self.streams
    }

    /// Stores `events` (in order) and returns them with their ids; on failure logs, counts and
    /// returns nothing. Never fails its caller: an event is a consequence, not a condition.
    pub async fn publish(&self, events: Vec<NewEvent>) -> Vec<Event> {
        let Some(b) = &self.backend else {
            return Vec::new();
        };
        if events.is_empty() {
            return Vec::new();
        }
        let n = events.len() as u64;
        match b.publish(events).await {
            Ok(stored) => {
                self.metrics.published.inc_by(stored.len() as u64);
                stored
            }
            Err(e) => {
                self.metrics.publish_failures.inc_by(n);
                tracing::error!(error = %e, events = n, "events could not be published");
                Vec::new()
            }
        }
    }

    /// Publishes one event of `kind` about `tenant` with `data`.
    pub async fn emit(
        &self,
        kind: EventType,
        tenant: Option<TenantId>,
        now: OffsetDateTime,
        data: serde_json::Value,
    ) {
        if self.backend.is_some() {
            self.publish(vec![NewEvent::new(kind, tenant, now, data)])
                .await;
        }
    }

    /// Removes events older than the retention window; returns how many went.
    pub async fn purge(&self, now: OffsetDateTime) -> Result<u64, EventError> {
        let (Some(b), Some(c)) = (&self.backend, &self.config) else {
            return Ok(0);
        };
        b.purge(now - time::Duration::days(i64::from(c.retention_days)))
            .await
    }
}

/// Runs the retention purge every hour.
pub fn spawn_purger(
    events: Events,
    clock: Arc<dyn portcullis_core::clock::Clock>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3_600));
        loop {
            tick.tick().await;
            match events.purge(clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "events past retention removed"),
                Err(e) => tracing::warn!(error = %e, "events retention purge failed"),
            }
        }
    })
}
