//! The gateway's declarative configuration (the `[gateway]` section of the TOML file): upstreams,
//! routes, rate-limit policies, trusted proxies and brute-force protection. It is read at start
//! and again on SIGHUP; see `docs/gateway.md`.
use std::{collections::BTreeMap, net::SocketAddr};

use serde::{Deserialize, Serialize};

/// `[gateway]`: absent `listen` means no gateway listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address of the proxy listener (separate from the admin / verify API's `listen`).
    pub listen: Option<SocketAddr>,
    /// TLS on the gateway listener (read at start; the files are re-read on change). Absent:
    /// plaintext HTTP.
    pub tls: Option<super::tls::TlsConfig>,
    /// Timeouts and caps of the gateway listener's connections (read at start, not on reload).
    pub connections: super::listen::ConnectionLimits,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs or addresses). Empty: the socket peer is
    /// the client, always.
    pub trusted_proxies: Vec<String>,
    /// What a header that could rewrite the request (`rewrite::REWRITE_HEADERS`) does when its
    /// sender may not send it: removed (`strip`), or the request is refused (`refuse`, 400
    /// `forbidden_header`).
    pub rewrite_headers: RewriteMode,
    /// Send `RateLimit-Policy` and `RateLimit` on allowed requests too (429s always carry them).
    pub rate_limit_headers: bool,
    /// Largest request body of a route without its own `max_body_bytes`.
    pub max_body_bytes: u64,
    /// Limiter state kept at most (keys, tenants, client addresses each); idle state is evicted.
    pub limiter_max_keys: usize,
    pub brute_force: BruteForceConfig,
    /// Limit of each tenant across all its keys, unless the tenant has its own.
    pub tenant_rate_limit: Option<RateLimitConfig>,
    /// Named rate-limit policies that routes refer to (applied per key).
    pub policies: BTreeMap<String, RateLimitConfig>,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: None,
            tls: None,
            connections: super::listen::ConnectionLimits::default(),
            trusted_proxies: Vec::new(),
            rewrite_headers: RewriteMode::Strip,
            rate_limit_headers: true,
            max_body_bytes: 10 * 1024 * 1024,
            limiter_max_keys: 1_000_000,
            brute_force: BruteForceConfig::default(),
            tenant_rate_limit: None,
            policies: BTreeMap::new(),
            upstreams: BTreeMap::new(),
            routes: Vec::new(),
        }
    }
}

/// Failed authentications per client address: past `threshold` within `window_seconds`, the
/// address gets 429 for `cooldown_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteForceConfig {
    pub enabled: bool,
    pub threshold: u32,
    pub window_seconds: u32,
    pub cooldown_seconds: u32,
}

impl Default for BruteForceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 20,
            window_seconds: 60,
            cooldown_seconds: 300,
        }
    }
}

/// `requests` per `per_seconds`, up to `burst` at once (default: `requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests: u32,
    pub per_seconds: u32,
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port`, optionally with a base path that is put in front of the request path.
    pub url: String,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Until the upstream's response headers arrive.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Idle keep-alive connections kept to this upstream.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Plaintext HTTP to an upstream that is not on a loopback or private address.
    #[serde(default)]
    pub danger_allow_plaintext_upstream: bool,
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_pool_max_idle() -> usize {
    64
}

/// Which environment a route admits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteEnvironment {
    Live,
    Test,
    #[default]
    Any,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Stable name: metrics labels, logs and the audit log use it.
    pub name: String,
    /// `Host` to match (without port, case-insensitive); absent: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Matches this path and everything below it (`/v1/invoices` matches `/v1/invoices/42`, not
    /// `/v1/invoices-old`).
    pub path_prefix: String,
    /// Allowed methods; empty: all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Name of an entry of `upstreams`.
    pub upstream: String,
    /// Scopes the key must have (all of them).
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub environment: RouteEnvironment,
    /// Name of an entry of `policies`: the per-key limit for keys without their own.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// No key needed (and none checked).
    #[serde(default)]
    pub public: bool,
    /// Upload route: bodies are measured (size, content type, SHA-256) as they stream.
    #[serde(default)]
    pub upload: bool,
    /// Largest body on this route (default: `gateway.max_body_bytes`).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Send the client's `Host` upstream instead of the upstream's own.
    #[serde(default)]
    pub preserve_host: bool,
    /// The upstream treats paths case-insensitively (IIS, …): the prefix matches in any ASCII
    /// case. Every route of an upstream must agree.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Path parameters (`/a;v=1/b`) may reach the upstream; only if the route is the same with
    /// them stripped (as Tomcat, Jetty and Spring do). Otherwise they are refused (400).
    #[serde(default)]
    pub allow_path_parameters: bool,
}

/// `[gateway] rewrite_headers`: what a listed header the peer may not send does to its request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewriteMode {
    /// The header is removed; the request goes on.
    #[default]
    Strip,
    /// The request is refused: 400 `forbidden_header`.
    Refuse,
}
