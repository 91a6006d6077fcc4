//! The gateway configuration, checked and compiled: the routing table with its upstream clients.
//! A `Runtime` is immutable; a reload builds a new one and swaps it in, so requests in flight keep
//! the one they started with.
use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};

use axum::http::{HeaderValue, Method, uri::Authority};
use ipnet::IpNet;
use portcullis_core::{
    scope::{self, Scope},
    tenant::Environment,
};
use portcullis_ratelimit::Quota;

use crate::{metrics::RouteHandles, pool::Pool};
use portcullis_service::metrics::Metrics;

use super::rewrite::RewriteMode;
use super::{
    config::{
        BruteForceConfig, GatewayConfig, RateLimitConfig, RouteConfig, RouteEnvironment,
        UpstreamConfig,
    },
    path::{self, Canonical, PathError},
};

/// Why a gateway configuration was refused (the message names the offending entry).
#[derive(Debug, thiserror::Error)]
#[error("gateway configuration: {0}")]
pub struct GatewayConfigError(pub String);

fn invalid(msg: impl Into<String>) -> GatewayConfigError {
    GatewayConfigError(msg.into())
}

/// One upstream: where to send, and its connection pool.
#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    pub authority: Authority,
    /// Put in front of the request path (empty, or `/base` without a trailing slash).
    pub base_path: String,
    pub host_header: HeaderValue,
    pub request_timeout: Duration,
    pub pool: Arc<Pool>,
}

/// A route's per-key policy: its name (for the headers) and quota.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: Arc<str>,
    pub quota: Quota,
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    host: Option<String>,
    prefix: String,
    methods: Vec<Method>,
    pub upstream: Arc<Upstream>,
    pub scopes: Vec<Scope>,
    pub environment: Option<Environment>,
    pub policy: Option<Policy>,
    pub public: bool,
    pub upload: bool,
    pub max_body_bytes: u64,
    pub preserve_host: bool,
    /// The prefix matches in any ASCII case (the upstream is case-insensitive).
    pub case_insensitive: bool,
    /// Path parameters (`;`) may reach the upstream.
    pub allow_path_parameters: bool,
    /// The route's metric handles (set by [`Runtime::with_metrics`]).
    pub handles: Option<RouteHandles>,
}

impl Route {
    fn matches_host(&self, host: Option<&str>) -> bool {
        match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        let n = self.prefix.len();
        let (Some(head), Some(rest)) = (path.get(..n), path.get(n..)) else {
            return false;
        };
        let same = if self.case_insensitive {
            head.eq_ignore_ascii_case(&self.prefix)
        } else {
            head == self.prefix
        };
        same && (rest.is_empty() || self.prefix.ends_with('/') || rest.starts_with('/'))
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    fn same_place(&self, other: &Route) -> bool {
        self.host == other.host && self.prefix == other.prefix
    }
}

/// The outcome of routing a request.
#[derive(Debug)]
pub enum Match<'a> {
    Found(&'a Route),
    MethodNotAllowed,
    NotFound,
}

#[derive(Debug)]
pub struct Runtime {
    /// Most specific first: routes with a host before those without, then longer prefixes.
    routes: Vec<Route>,
    pub trusted_proxies: Vec<IpNet>,
    pub rewrite_headers: RewriteMode,
    pub rate_limit_headers: bool,
    pub brute_force: BruteForceConfig,
    pub tenant_quota: Option<Quota>,
}

impl Runtime {
    /// Checks `cfg` and builds the routing table and the upstream clients.
    pub fn build(cfg: &GatewayConfig) -> Result<Self, GatewayConfigError> {
        let trusted_proxies =
            super::headers::parse_trusted_proxies(&cfg.trusted_proxies).map_err(invalid)?;
        let bf = &cfg.brute_force;
        if bf.threshold == 0 || !(1..=3_600).contains(&bf.window_seconds) {
            return Err(invalid(
                "brute_force: threshold must be at least 1 and window_seconds 1..=3600",
            ));
        }
        if !(1..=86_400).contains(&bf.cooldown_seconds) {
            return Err(invalid("brute_force.cooldown_seconds must be 1..=86400"));
        }
        if cfg.limiter_max_keys < 1_000 {
            return Err(invalid("limiter_max_keys must be at least 1000"));
        }
        let tenant_quota = cfg
            .tenant_rate_limit
            .map(|q| quota("tenant_rate_limit", q))
            .transpose()?;
        let mut policies = BTreeMap::new();
        for (name, q) in &cfg.policies {
            if !portcullis_ratelimit::valid_policy_name(name) {
                return Err(invalid(format!(
                    "policies: {name:?} is not a valid name ([a-z0-9_-], 1 to 40)"
                )));
            }
            policies.insert(
                name.as_str(),
                Policy {
                    name: Arc::from(name.as_str()),
                    quota: quota(&format!("policies.{name}"), *q)?,
                },
            );
        }
        let mut upstreams = BTreeMap::new();
        for (name, u) in &cfg.upstreams {
            upstreams.insert(name.as_str(), Arc::new(upstream(name, u)?));
        }
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            if routes.iter().any(|o: &Route| *o.name == *r.name) {
                return Err(invalid(format!(
                    "routes: the name {:?} is used twice",
                    r.name
                )));
            }
            routes.push(route(r, cfg, &upstreams, &policies)?);
        }
        check_case(&routes)?;
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        Ok(Self {
            routes,
            trusted_proxies,
            rewrite_headers: cfg.rewrite_headers,
            rate_limit_headers: cfg.rate_limit_headers,
            brute_force: bf.clone(),
            tenant_quota,
        })
    }

    /// The most specific route for `host` and `path`; among routes of that same host and prefix,
    /// the one that allows `method`.
    pub fn route(&self, host: Option<&str>, path: &str, method: &Method) -> Match<'_> {
        let Some(first) = self
            .routes
            .iter()
            .find(|r| r.matches_host(host) && r.matches_path(path))
        else {
            return Match::NotFound;
        };
        self.routes
            .iter()
            .filter(|r| r.same_place(first))
            .find(|r| r.allows(method))
            .map_or(Match::MethodNotAllowed, Match::Found)
    }

    /// Routes a canonical path. A path with path parameters is routed only if the route is the
    /// same whether the upstream strips them (Tomcat, Jetty, Spring) or not, and that route
    /// allows them; a case-insensitive route refuses what a Windows upstream would fold.
    pub fn route_path(
        &self,
        host: Option<&str>,
        path: &Canonical<'_>,
        method: &Method,
    ) -> Result<Match<'_>, PathError> {
        let found = self.route(host, path.as_str(), method);
        let Match::Found(route) = found else {
            return Ok(found);
        };
        if path.has_parameters() {
            let stripped = self.route(host, &path.without_parameters(), method);
            let same = matches!(stripped, Match::Found(s) if std::ptr::eq(s, route));
            if !same || !route.allow_path_parameters {
                return Err(PathError::Parameters);
            }
        }
        if route.case_insensitive {
            path.check_case_insensitive()?;
        }
        Ok(found)
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The runtime with each route's metric handles resolved in `m`.
    pub fn with_metrics(mut self, m: &Metrics) -> Self {
        for r in &mut self.routes {
            r.handles = Some(RouteHandles::of(m, &r.name));
        }
        self
    }
}

fn quota(what: &str, q: RateLimitConfig) -> Result<Quota, GatewayConfigError> {
    Quota::new(q.requests, q.per_seconds, q.burst.unwrap_or(q.requests)).map_err(|e| {
        invalid(format!(
            "{what}: {e} (requests 1..=1000000, per_seconds 1..=86400, burst 1..=1000000)"
        ))
    })
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

fn upstream(name: &str, u: &UpstreamConfig) -> Result<Upstream, GatewayConfigError> {
    let what = format!("upstreams.{name}");
    if !valid_name(name) {
        return Err(invalid(format!(
            "{what}: invalid name ([a-z0-9_-], 1 to 64)"
        )));
    }
    let uri: axum::http::Uri = u
        .url
        .parse()
        .map_err(|_| invalid(format!("{what}.url is not a URL")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(format!(
                "{what}.url: https upstreams are not supported yet; use http on a private network"
            )));
        }
        _ => return Err(invalid(format!("{what}.url must start with http://"))),
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| invalid(format!("{what}.url has no host")))?;
    if uri.query().is_some() || authority.as_str().contains('@') {
        return Err(invalid(format!(
            "{what}.url may not hold a query or credentials"
        )));
    }
    if !u.danger_allow_plaintext_upstream && !private_host(authority.host()) {
        return Err(invalid(format!(
            "{what}: plaintext HTTP to {} (not a loopback or private address); set danger_allow_plaintext_upstream = true to allow it",
            authority.host()
        )));
    }
    if !(1..=60_000).contains(&u.connect_timeout_ms)
        || !(1..=3_600_000).contains(&u.request_timeout_ms)
    {
        return Err(invalid(format!(
            "{what}: connect_timeout_ms must be 1..=60000 and request_timeout_ms 1..=3600000"
        )));
    }
    if u.pool_max_idle > 10_000 {
        return Err(invalid(format!(
            "{what}.pool_max_idle must be at most 10000"
        )));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let pool = Pool::new(
        &addr,
        Duration::from_millis(u.connect_timeout_ms),
        u.pool_max_idle,
    );
    let host_header = HeaderValue::from_str(authority.as_str())
        .map_err(|_| invalid(format!("{what}.url has an invalid host")))?;
    Ok(Upstream {
        name: Arc::from(name),
        authority,
        base_path,
        host_header,
        request_timeout: Duration::from_millis(u.request_timeout_ms),
        pool,
    })
}

/// Loopback, private or link-local address literals, and `localhost`.
fn private_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(IpAddr::V4(v4)) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()
        }
        Err(_) => false,
    }
}

/// Routes of one upstream agree on `case_insensitive` (a case-insensitive upstream serves
/// `/ADMIN` as `/admin` whichever route the request matched, so every route to it must match in
/// any case), and no two routes of a host have prefixes that differ only in case when one of
/// them is case-insensitive (which one matches would be ambiguous).
fn check_case(routes: &[Route]) -> Result<(), GatewayConfigError> {
    for (i, a) in routes.iter().enumerate() {
        for b in &routes[i + 1..] {
            if Arc::ptr_eq(&a.upstream, &b.upstream) && a.case_insensitive != b.case_insensitive {
                return Err(invalid(format!(
                    "routes[{}] and routes[{}] go to upstream {:?}: case_insensitive must be the same on every route of an upstream",
                    a.name, b.name, a.upstream.name
                )));
            }
            let clash = (a.case_insensitive || b.case_insensitive)
                && a.host == b.host
                && a.prefix != b.prefix
                && a.prefix.eq_ignore_ascii_case(&b.prefix);
            if clash {
                return Err(invalid(format!(
                    "routes[{}] and routes[{}]: path prefixes that differ only in case on a case_insensitive route",
                    a.name, b.name
                )));
            }
        }
    }
    Ok(())
}

/// A path prefix: absolute, in canonical form (see `path`), no query, no percent-encoding, no
/// path parameters; a trailing `/` is dropped (except for `/` itself).
fn prefix(what: &str, p: &str) -> Result<String, GatewayConfigError> {
    let canonical = path::canonical(p).is_ok_and(|c| c.as_str() == p);
    let bad = !canonical || p.contains(['?', '#', '%', ';']) || p.len() > 1024;
    if bad {
        return Err(invalid(format!(
            "{what}.path_prefix must be an absolute canonical path without query, dot or empty segments, percent-encoding or ';'"
        )));
    }
    let t = p.trim_end_matches('/');
    Ok(if t.is_empty() { "/".into() } else { t.into() })
}

fn route(
    r: &RouteConfig,
    cfg: &GatewayConfig,
    upstreams: &BTreeMap<&str, Arc<Upstream>>,
    policies: &BTreeMap<&str, Policy>,
) -> Result<Route, GatewayConfigError> {
    let what = format!("routes[{}]", r.name);
    if !valid_name(&r.name) {
        return Err(invalid(format!(
            "{what}: invalid route name ([a-z0-9_-], 1 to 64)"
        )));
    }
    let methods = r
        .methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid(format!("{what}.methods: {m:?} is not a method")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let upstream = upstreams
        .get(r.upstream.as_str())
        .cloned()
        .ok_or_else(|| invalid(format!("{what}.upstream: no upstream {:?}", r.upstream)))?;
    let scopes =
        scope::parse_scopes(&r.scopes).map_err(|e| invalid(format!("{what}.scopes: {e}")))?;
    if r.public && (!scopes.is_empty() || r.rate_limit.is_some()) {
        return Err(invalid(format!(
            "{what}: a public route takes no scopes and no per-key rate limit"
        )));
    }
    let policy = match &r.rate_limit {
        None => None,
        Some(name) => Some(
            policies
                .get(name.as_str())
                .cloned()
                .ok_or_else(|| invalid(format!("{what}.rate_limit: no policy {name:?}")))?,
        ),
    };
    let host = match &r.host {
        Some(h) if h.is_empty() || h.contains(['/', ' ', ':']) => {
            return Err(invalid(format!("{what}.host must be a bare host name")));
        }
        h => h.as_ref().map(|h| h.to_ascii_lowercase()),
    };
    let max_body_bytes = r.max_body_bytes.unwrap_or(cfg.max_body_bytes);
    Ok(Route {
        name: Arc::from(r.name.as_str()),
        host,
        prefix: prefix(&what, &r.path_prefix)?,
        methods,
        upstream,
        scopes,
        environment: match r.environment {
            RouteEnvironment::Live => Some(Environment::Live),
            RouteEnvironment::Test => Some(Environment::Test),
            RouteEnvironment::Any => None,
        },
        policy,
        public: r.public,
        upload: r.upload,
        max_body_bytes,
        preserve_host: r.preserve_host,
        case_insensitive: r.case_insensitive,
        allow_path_parameters: r.allow_path_parameters,
        handles: None,
    })
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
