//! `[events]`: where events are kept and how they are served.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Which backend keeps events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventsBackendKind {
    /// SQLite beside the key store, broadcast in-process (one node).
    #[default]
    Sqlite,
    /// NATS JetStream (several nodes publish and serve SSE through one stream).
    Nats,
}

/// `[events]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub enabled: bool,
    pub backend: EventsBackendKind,
    /// The embedded backend's database. Default: `{data_dir}/events.sqlite3`.
    pub database: Option<PathBuf>,
    /// Events older than this are removed (embedded: by a periodic purge; NATS: the stream's
    /// max age).
    pub retention_days: u32,
    /// `key.expiring` is raised this many days before a key expires (once per key and expiry).
    pub expiring_days: u32,
    /// How often keys are checked for `key.expiring` / `key.expired`, in seconds.
    pub expiry_check_seconds: u64,
    pub nats: NatsSection,
    pub sse: SseConfig,
    /// `[events.anomaly]`: rate spikes, new client addresses, failure bursts, revoked keys in
    /// use, rate-limited requests per window.
    pub anomaly: portcullis_events::anomaly::AnomalyConfig,
    /// `[events.webhooks]`: webhook delivery.
    pub webhooks: super::webhooks::WebhooksConfig,
}

/// `[events.nats]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    /// JetStream's duplicate window (publishes of one message id within it are stored once).
    pub duplicate_window_seconds: u64,
}

/// `[events.sse]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SseConfig {
    /// Events waiting for one slow client, at most; beyond, it is told to reconnect and closed.
    pub buffer: usize,
    /// A comment line is sent after this many seconds without an event.
    pub heartbeat_seconds: u64,
    /// The `retry:` a client is told (milliseconds).
    pub retry_ms: u64,
    /// Open streams, at most (503 beyond).
    pub max_subscribers: usize,
    /// Open streams reading one tenant, at most (429 `too_many_streams` beyond).
    pub max_per_tenant: usize,
    /// Open streams of one admin key, at most (429 `too_many_streams` beyond).
    pub max_per_key: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: EventsBackendKind::Sqlite,
            database: None,
            retention_days: 7,
            expiring_days: 7,
            expiry_check_seconds: 60,
            nats: NatsSection::default(),
            sse: SseConfig::default(),
            anomaly: portcullis_events::anomaly::AnomalyConfig::default(),
            webhooks: super::webhooks::WebhooksConfig::default(),
        }
    }
}

impl Default for NatsSection {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "PORTCULLIS_EVENTS".into(),
            subject_prefix: "portcullis.events".into(),
            duplicate_window_seconds: 120,
        }
    }
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            buffer: 1_024,
            heartbeat_seconds: 15,
            retry_ms: 3_000,
            max_subscribers: 10_000,
            max_per_tenant: 100,
            max_per_key: 10,
        }
    }
}

impl EventsConfig {
    /// Checks ranges; `Err` names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.anomaly
            .validate()
            .map_err(|e| ConfigError::Parse(format!("events.{e}")))?;
        if !(1..=3_650).contains(&self.retention_days) {
            return Err(ConfigError::Invalid(
                "events.retention_days must be between 1 and 3650",
            ));
        }
        if !(1..=365).contains(&self.expiring_days) {
            return Err(ConfigError::Invalid(
                "events.expiring_days must be between 1 and 365",
            ));
        }
        if !(1..=86_400).contains(&self.expiry_check_seconds) {
            return Err(ConfigError::Invalid(
                "events.expiry_check_seconds must be between 1 and 86400",
            ));
        }
        if !(1..=1_000_000).contains(&self.sse.buffer) {
            return Err(ConfigError::Invalid(
                "events.sse.buffer must be between 1 and 1000000",
            ));
        }
        if !(1..=3_600).contains(&self.sse.heartbeat_seconds) {
            return Err(ConfigError::Invalid(
                "events.sse.heartbeat_seconds must be between 1 and 3600",
            ));
        }
        if !(100..=3_600_000).contains(&self.sse.retry_ms) {
            return Err(ConfigError::Invalid(
                "events.sse.retry_ms must be between 100 and 3600000",
            ));
        }
        if !(1..=1_000_000).contains(&self.sse.max_subscribers) {
            return Err(ConfigError::Invalid(
                "events.sse.max_subscribers must be between 1 and 1000000",
            ));
        }
        if !(1..=1_000_000).contains(&self.sse.max_per_tenant) {
            return Err(ConfigError::Invalid(
                "events.sse.max_per_tenant must be between 1 and 1000000",
            ));
        }
        if !(1..=1_000_000).contains(&self.sse.max_per_key) {
            return Err(ConfigError::Invalid(
                "events.sse.max_per_key must be between 1 and 1000000",
            ));
        }
        if !(1..=86_400).contains(&self.nats.duplicate_window_seconds) {
            return Err(ConfigError::Invalid(
                "events.nats.duplicate_window_seconds must be between 1 and 86400",
            ));
        }
        self.webhooks.validate()?;
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token_ok(&self.nats.stream) {
            return Err(ConfigError::Invalid(
                "events.nats.stream must be 1 to 128 characters of [A-Za-z0-9_-]",
            ));
        }
        let prefix_ok = self.nats.subject_prefix.split('.').all(token_ok);
        if !prefix_ok {
            return Err(ConfigError::Invalid(
                "events.nats.subject_prefix must be dot-separated tokens of [A-Za-z0-9_-]",
            ));
        }
        Ok(())
    }
}
