//! Configuration: defaults, then a TOML file, then `PORTCULLIS_*` environment variables (nested
//! keys joined by `__`, e.g. `PORTCULLIS_CACHE__CAPACITY=0`), then command-line flags.
//! Every option is documented in `docs/configuration.md`.
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use portcullis_core::{limits, request::KeyPolicy};
use serde::{Deserialize, Serialize};

pub mod events;
pub mod gateway;
pub mod listen;
pub mod tls;
pub mod webhooks;

pub use gateway::GatewayConfig;
pub use tls::TlsConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the SQLite database, the pepper file and other state.
    pub data_dir: PathBuf,
    /// The pepper as hex (at least 64 hex characters). Prefer `pepper_file`.
    pub pepper: Option<String>,
    /// A file holding the pepper as hex. Default: `{data_dir}/pepper`, generated on first start.
    pub pepper_file: Option<PathBuf>,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// TLS on the admin / verify API listener (see `docs/tls.md`). Absent: plaintext HTTP.
    pub tls: Option<tls::TlsConfig>,
    /// Serve plaintext HTTP on a non-loopback address. Off: plaintext is only served on loopback
    /// (configure `tls`, put a TLS-terminating proxy in front, or keep portcullis on 127.0.0.1).
    pub danger_allow_plaintext_listen: bool,
    /// Peers of the admin / verify API listener whose `X-Forwarded-For` is believed (CIDRs or
    /// addresses) for the client address of audit records. Empty: the socket peer, always. The
    /// gateway has its own, `gateway.trusted_proxies`.
    pub trusted_proxies: Vec<String>,
    /// Timeouts and caps of the admin / verify API listener's connections.
    pub connections: listen::ConnectionLimits,
    pub cache: CacheConfig,
    pub keys: KeysConfig,
    pub log: LogConfig,
    /// The reverse proxy (see `docs/gateway.md`).
    pub gateway: gateway::GatewayConfig,
    /// The tamper-evident audit log.
    pub audit: AuditConfig,
    /// Events: SSE stream, webhooks, anomaly alerts (see `docs/events.md`).
    pub events: events::EventsConfig,
}

/// What the server does when the audit log cannot keep up or cannot be written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditMode {
    /// Refuse API and gateway requests (503 `audit_unavailable`) while records cannot be kept.
    #[default]
    FailClosed,
    /// Keep serving; count dropped records and log once per degraded episode.
    BestEffort,
}

/// How client addresses are written to the audit log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientIpMode {
    /// As seen.
    #[default]
    Store,
    /// HMAC-SHA256 under a per-tenant key derived from the pepper: the same address gives the
    /// same value within a tenant, and different values across tenants.
    Pseudonymise,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub enabled: bool,
    pub mode: AuditMode,
    /// Records waiting for the writer, at most.
    pub queue_capacity: usize,
    /// Records written in one transaction, at most.
    pub batch_max: usize,
    /// How long the writer waits for more records after the first of a batch (milliseconds; 0:
    /// it writes what is queued at once). Fewer, larger appends cost less per record; a request
    /// never waits for its record either way.
    pub batch_linger_ms: u64,
    /// A signed checkpoint of a chain after this many records…
    pub checkpoint_every_records: u64,
    /// …or this many seconds after its last one (when it has new records).
    pub checkpoint_every_seconds: u64,
    pub client_ip: ClientIpMode,
    /// The Ed25519 checkpoint signing key. Default: `{data_dir}/audit-signing.key`, created
    /// (mode 0600) on first start.
    pub signing_key_file: Option<PathBuf>,
    /// The audit database. Default: `{data_dir}/audit.sqlite3`.
    pub database: Option<PathBuf>,
    /// Entries older than this are purged (under a signed retention checkpoint).
    pub retention_days: u32,
    /// Per-tenant retention, overriding `retention_days`.
    pub tenant_retention_days: BTreeMap<String, u32>,
    pub purge_interval_seconds: u64,
    /// The disk budget of the audit database in bytes (pages in use; none by default). At the
    /// budget, `fail_closed` refuses requests (503 `audit_unavailable`, `/readyz` not ready) and
    /// `best_effort` drops records (counted) until a retention purge frees space.
    pub max_bytes: Option<u64>,
    /// Gateway refusals of requests without a valid credential are aggregated per client
    /// address and reason over windows of this many seconds (one record per window).
    pub refusal_window_seconds: u64,
    /// (address, reason) groups kept per window, at most; refusals of further groups are
    /// counted in one `_overflow` record.
    pub refusal_max_groups: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: AuditMode::FailClosed,
            queue_capacity: 65_536,
            batch_max: 4_096,
            batch_linger_ms: 10,
            checkpoint_every_records: 10_000,
            checkpoint_every_seconds: 60,
            client_ip: ClientIpMode::Store,
            signing_key_file: None,
            database: None,
            retention_days: 400,
            tenant_retention_days: BTreeMap::new(),
            purge_interval_seconds: 3_600,
            max_bytes: None,
            refusal_window_seconds: 60,
            refusal_max_groups: 10_000,
        }
    }
}

impl AuditConfig {
    /// Checks ranges; `Err` names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=(1 << 24)).contains(&self.queue_capacity) {
            return Err(ConfigError::Invalid(
                "audit.queue_capacity must be between 1 and 16777216",
            ));
        }
        if !(1..=65_536).contains(&self.batch_max) {
            return Err(ConfigError::Invalid(
                "audit.batch_max must be between 1 and 65536",
            ));
        }
        if self.batch_linger_ms > 1_000 {
            return Err(ConfigError::Invalid(
                "audit.batch_linger_ms must be between 0 and 1000",
            ));
        }
        if self.checkpoint_every_records == 0 {
            return Err(ConfigError::Invalid(
                "audit.checkpoint_every_records must be at least 1",
            ));
        }
        if !(1..=86_400).contains(&self.checkpoint_every_seconds) {
            return Err(ConfigError::Invalid(
                "audit.checkpoint_every_seconds must be between 1 and 86400",
            ));
        }
        if !(1..=36_500).contains(&self.retention_days) {
            return Err(ConfigError::Invalid(
                "audit.retention_days must be between 1 and 36500",
            ));
        }
        for (tenant, days) in &self.tenant_retention_days {
            if portcullis_core::tenant::TenantId::parse(tenant).is_err() {
                return Err(ConfigError::Invalid(
                    "audit.tenant_retention_days: a key is not a valid tenant id",
                ));
            }
            if !(1..=36_500).contains(days) {
                return Err(ConfigError::Invalid(
                    "audit.tenant_retention_days: each value must be between 1 and 36500",
                ));
            }
        }
        if !(1..=604_800).contains(&self.purge_interval_seconds) {
            return Err(ConfigError::Invalid(
                "audit.purge_interval_seconds must be between 1 and 604800",
            ));
        }
        if self.max_bytes == Some(0) {
            return Err(ConfigError::Invalid(
                "audit.max_bytes must be at least 1 (leave it out for no budget)",
            ));
        }
        if !(1..=3_600).contains(&self.refusal_window_seconds) {
            return Err(ConfigError::Invalid(
                "audit.refusal_window_seconds must be between 1 and 3600",
            ));
        }
        if !(1..=1_000_000).contains(&self.refusal_max_groups) {
            return Err(ConfigError::Invalid(
                "audit.refusal_max_groups must be between 1 and 1000000",
            ));
        }
        Ok(())
    }

    /// Retention of `tenant`'s chain in days.
    pub fn retention_days_of(&self, tenant: &str) -> u32 {
        self.tenant_retention_days
            .get(tenant)
            .copied()
            .unwrap_or(self.retention_days)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Key records kept in memory (0 disables the cache).
    pub capacity: u64,
    /// How long a cached record is kept before it is read again. Changes made through this
    /// server take effect at once, changes made by another process (such as the
    /// `portcullis key revoke` operator command) within `change_poll_ms`; the TTL only bounds
    /// the life of an entry should the change feed be unreadable.
    pub ttl_seconds: u64,
    /// How often the store's change feed is read (milliseconds, 10..=10000).
    pub change_poll_ms: u64,
    /// How long an unknown (well-formed) key is remembered as unknown.
    pub negative_ttl_seconds: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Maximum lifetime of live keys (seconds), for every tenant.
    pub max_live_lifetime_seconds: Option<i64>,
    /// Maximum lifetime of test keys (seconds), for every tenant.
    pub max_test_lifetime_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (default) or `text`.
    pub format: String,
    /// A `tracing` filter, e.g. `info` or `portcullis_server=debug,info`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./portcullis-data"),
            pepper: None,
            pepper_file: None,
            max_body_bytes: limits::DEFAULT_MAX_BODY_BYTES,
            tls: None,
            danger_allow_plaintext_listen: false,
            trusted_proxies: Vec::new(),
            connections: listen::ConnectionLimits::default(),
            cache: CacheConfig::default(),
            keys: KeysConfig::default(),
            log: LogConfig::default(),
            gateway: gateway::GatewayConfig::default(),
            audit: AuditConfig::default(),
            events: events::EventsConfig::default(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl_seconds: 60,
            change_poll_ms: 250,
            negative_ttl_seconds: 10,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

/// `PORTCULLIS_*` variables that are not configuration keys: the config file path, and switches
/// of the test and benchmark tooling.
const NOT_CONFIG: &[&str] = &["config", "require_services", "test_", "bench_"];

/// Is `PORTCULLIS_{name}` a configuration variable (`name` as found, in any case)?
fn is_config_var(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !NOT_CONFIG.iter().any(|p| name.starts_with(p))
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {0}")]
    Invalid(&'static str),
    /// A value out of its range; the message names the key.
    #[error("configuration: {0}")]
    OutOfRange(String),
}

impl Config {
    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Parse(format!(
                    "file {} does not exist",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(
            Env::prefixed("PORTCULLIS_")
                .filter(|k| is_config_var(k.as_str()))
                .split("__"),
        );
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 || self.max_body_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be between 1 KiB and 16 MiB",
            ));
        }
        if !(10..=10_000).contains(&self.cache.change_poll_ms) {
            return Err(ConfigError::Invalid(
                "cache.change_poll_ms must be between 10 and 10000",
            ));
        }
        for l in [
            self.keys.max_live_lifetime_seconds,
            self.keys.max_test_lifetime_seconds,
        ]
        .into_iter()
        .flatten()
        {
            if !(60..=limits::MAX_LIFETIME_SECONDS).contains(&l) {
                return Err(ConfigError::Invalid(
                    "keys.max_*_lifetime_seconds out of range",
                ));
            }
        }
        if !self.listen.ip().is_loopback()
            && self.tls.is_none()
            && !self.danger_allow_plaintext_listen
        {
            return Err(ConfigError::Invalid(
                "refusing to serve plaintext HTTP on a non-loopback address; configure [tls], listen on 127.0.0.1 behind a TLS proxy, or set danger_allow_plaintext_listen = true",
            ));
        }
        if let Some(g) = self.gateway.listen
            && !g.ip().is_loopback()
            && self.gateway.tls.is_none()
            && !self.danger_allow_plaintext_listen
        {
            return Err(ConfigError::Invalid(
                "refusing to serve the gateway as plaintext HTTP on a non-loopback address; configure [gateway.tls], listen on 127.0.0.1 behind a TLS proxy, or set danger_allow_plaintext_listen = true",
            ));
        }
        if let Some(t) = &self.tls {
            t.validate("tls")?;
        }
        if let Some(t) = &self.gateway.tls {
            t.validate("gateway.tls")?;
        }
        if self.gateway.listen.is_some_and(|g| g == self.listen) {
            return Err(ConfigError::Invalid(
                "gateway.listen must differ from listen (the admin and verify API)",
            ));
        }
        if portcullis_core::ip::parse_trusted_proxies(&self.trusted_proxies).is_err() {
            return Err(ConfigError::Invalid(
                "trusted_proxies: every entry must be an address or a CIDR",
            ));
        }
        if !matches!(self.log.format.as_str(), "json" | "text") {
            return Err(ConfigError::Invalid("log.format must be json or text"));
        }
        self.connections.validate("connections")?;
        self.gateway.connections.validate("gateway.connections")?;
        self.audit.validate()?;
        self.events.validate()
    }

    /// The embedded events database file.
    pub fn events_database(&self) -> PathBuf {
        self.events
            .database
            .clone()
            .unwrap_or_else(|| self.data_dir.join("events.sqlite3"))
    }

    /// The audit database file.
    pub fn audit_database(&self) -> PathBuf {
        self.audit
            .database
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit.sqlite3"))
    }

    /// The audit checkpoint signing key file.
    pub fn audit_signing_key_file(&self) -> PathBuf {
        self.audit
            .signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-signing.key"))
    }

    pub fn key_policy(&self) -> KeyPolicy {
        KeyPolicy {
            max_live_lifetime_seconds: self.keys.max_live_lifetime_seconds,
            max_test_lifetime_seconds: self.keys.max_test_lifetime_seconds,
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
