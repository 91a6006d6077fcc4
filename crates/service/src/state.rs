//! Shared server state.
use std::sync::Arc;

use portcullis_core::{clock::Clock, hash::Pepper, request::KeyPolicy};
use portcullis_store::Store;

use crate::{
    audit::AuditLog,
    cache::KeyCache,
    config::{ClientIpMode, Config},
    events::Events,
    metrics::Metrics,
    usage::UsageRecorder,
};

/// Shared server state: one reference count per clone (axum clones it for every extractor).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub pepper: Arc<Pepper>,
    pub clock: Arc<dyn Clock>,
    pub cache: KeyCache,
    /// Moves after each read of the store's change feed that applied changes.
    pub changes: crate::changes::ChangeSignal,
    /// How often the change feed is read (`cache.change_poll_ms`).
    pub change_poll_ms: u64,
    pub metrics: Arc<Metrics>,
    pub usage: UsageRecorder,
    pub policy: KeyPolicy,
    pub max_body_bytes: usize,
    /// Timeouts and caps of the API listener's connections.
    pub connections: crate::config::listen::ConnectionLimits,
    /// The audit log (a disabled one unless built with [`AppState::with_audit`]).
    pub audit: AuditLog,
    /// How client addresses go into audit records.
    pub audit_client_ip: ClientIpMode,
    /// Peers of the admin / verify API listener whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where events are published (a disabled handle unless given with
    /// [`AppState::with_events`]).
    pub events: Events,
    /// The anomaly detector (none while events or detection are off).
    pub anomaly: Option<Arc<crate::events::anomaly::Detector>>,
}

impl AppState {
    /// State without an audit log (records are discarded).
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        pepper: Pepper,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_audit(config, store, pepper, clock, AuditLog::disabled())
    }

    /// State recording into `audit` (see [`crate::audit::open`]); its metrics are served at
    /// `/metrics` with the others.
    pub fn with_audit(
        config: &Config,
        store: Arc<dyn Store>,
        pepper: Pepper,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self(Arc::new(Shared {
            store,
            pepper: Arc::new(pepper),
            clock,
            cache: KeyCache::new(&config.cache),
            changes: Default::default(),
            change_poll_ms: config.cache.change_poll_ms,
            metrics: Arc::new(Metrics::with_audit(audit.metrics().clone())),
            usage: UsageRecorder::default(),
            policy: config.key_policy(),
            max_body_bytes: config.max_body_bytes,
            connections: config.connections.clone(),
            audit,
            audit_client_ip: config.audit.client_ip,
            // Checked by `Config::validate`; a configuration that skipped it trusts no peer.
            trusted_proxies: portcullis_core::ip::parse_trusted_proxies(&config.trusted_proxies)
                .unwrap_or_default(),
            events: Events::disabled(),
            anomaly: None,
        }))
    }

    /// The state publishing events to `events` (whose counters join the server's `/metrics`),
    /// its webhook secrets sealed under a key derived from the pepper. Call it on a state just
    /// built, before it is cloned.
    pub fn with_events(mut self, mut events: Events) -> Self {
        let shared = Arc::get_mut(&mut self.0)
            .expect("AppState::with_events is called on a state that was not cloned yet");
        events.metrics = shared.metrics.events.clone();
        let events = events.sealing_webhooks(&shared.pepper);
        shared.anomaly = events.config().and_then(crate::events::anomaly::detector);
        shared.events = events;
        self
    }

    /// The context of a change made through the API by `actor` (an admin key id).
    pub fn ctx<'a>(&'a self, actor: &'a str) -> crate::ops::Ctx<'a> {
        crate::ops::Ctx {
            actor,
            audit: &self.audit,
            store: self.store.as_ref(),
            pepper: &self.pepper,
            policy: &self.policy,
            now: self.clock.now(),
            cache: Some(&self.cache),
            events: Some(&self.events),
        }
    }
}
