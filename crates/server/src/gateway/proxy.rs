//! The gateway's request path: canonical path → route → brute-force check → credential → decision → rate limits
//! → upstream, with the body streamed both ways. Every refusal is the uniform JSON error.
use std::{borrow::Cow, net::IpAddr, sync::Arc, time::Instant};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{
        HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version,
        header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER},
    },
    response::{IntoResponse, Response},
};
use portcullis_core::{
    ExposeSecret,
    decision::{self, DecisionCode, Requirements, Subject},
};
use portcullis_ratelimit::{Outcome, Quota};

use super::{
    Gateway, audit,
    headers::{self, Identity},
    listener::Peer,
    path::{self, PathError},
    rewrite::{self, RewriteMode},
    runtime::{Match, Route, Runtime},
    upload::{Exceeded, Metered},
};
use crate::{
    auth,
    cache::{CachedKey, Entry},
    error::ApiError,
    metrics::{GatewayLabels, LimiterLabels, RouteName, SharedLabel},
    usage::TOUCH_EVERY_SECONDS,
};

/// The route label of requests no route matched.
static UNMATCHED: std::sync::LazyLock<Arc<str>> =
    std::sync::LazyLock::new(|| Arc::from("unmatched"));
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A refusal: the error, the decision label for metrics, and headers to add.
struct Refusal {
    error: ApiError,
    decision: &'static str,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    fn new(decision: &'static str, error: ApiError) -> Self {
        Self {
            error,
            decision,
            headers: Vec::new(),
        }
    }

    fn into_response(self) -> Response {
        let mut resp = self.error.into_response();
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

fn refuse(
    decision: &'static str,
    status: StatusCode,
    code: &'static str,
    msg: &'static str,
) -> Refusal {
    Refusal::new(decision, ApiError::new(status, code, msg))
}

/// The proxy handler: every request of the gateway listener.
pub async fn handle(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    req: Request,
) -> Response {
    let Ok(place) = gw.app.audit.admit().await else {
        let resp = crate::audit::request::unavailable().into_response();
        gw.app
            .metrics
            .gateway_requests
            .get_or_create(&GatewayLabels {
                route: SharedLabel(UNMATCHED.clone()),
                status: resp.status().as_u16(),
                decision: "audit_unavailable",
            })
            .inc();
        return resp;
    };
    let start = Instant::now();
    // What the audit record needs of the request, only when there is a log to record into.
    let started = gw
        .app
        .audit
        .enabled()
        .then(|| audit::Started::of(&gw, peer.ip(), &req, start));
    let rt = gw.runtime();
    let m = &gw.app.metrics;
    let mut facts = audit::Facts::default();
    let (route_name, result) = forward(&gw, &rt, peer.ip(), req, &mut facts).await;
    let (resp, decision, code) = match result {
        Ok(resp) => (resp, "allowed", None),
        Err(r) => {
            let (d, c) = (r.decision, r.error.code);
            (r.into_response(), d, Some(c))
        }
    };
    let route = SharedLabel(route_name.unwrap_or_else(|| UNMATCHED.clone()));
    m.gateway_duration
        .get_or_create(&RouteName {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    if let Some(started) = started {
        let status = resp.status().as_u16();
        let bytes_out = crate::audit::request::response_length(&resp);
        let answer = audit::Answer {
            route: &route.0,
            status,
            outcome: decision,
            code,
            bytes_out,
        };
        audit::record(&gw, place, started, facts, answer);
    }
    m.gateway_requests
        .get_or_create(&GatewayLabels {
            route,
            status: resp.status().as_u16(),
            decision,
        })
        .inc();
    resp
}

async fn forward(
    gw: &Gateway,
    rt: &Runtime,
    peer: IpAddr,
    req: Request,
    facts: &mut audit::Facts,
) -> (Option<Arc<str>>, Result<Response, Refusal>) {
    let peer_trusted = headers::is_trusted(peer, &rt.trusted_proxies);
    if let Err(r) = rewrite_policy(rt, peer_trusted, req.headers()) {
        return (None, Err(r));
    }
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .map(|h| strip_port(h).to_owned());
    // The one path used from here on: routed, and sent upstream (`forwarded`: only if it differs
    // from what the client sent).
    let (route, forwarded) = match canonical_route(rt, host.as_deref(), &req) {
        Ok(found) => found,
        Err(r) => return (None, Err(r)),
    };
    let name = Some(route.name.clone());
    if gw.app.audit.enabled() {
        facts.canonical_path = forwarded.as_deref().map(Box::from);
    }
    let client = headers::client_ip(peer, req.headers(), &rt.trusted_proxies);
    facts.client = Some(client);
    let admitted = if route.public {
        Admitted::default()
    } else {
        match admit(gw, rt, route, client, req.headers(), facts).await {
            Ok(a) => a,
            Err(r) => return (name, Err(r)),
        }
    };
    let result = send(
        gw,
        route,
        Peering {
            peer,
            peer_trusted,
            host: host.as_deref(),
        },
        &admitted,
        forwarded,
        req,
    )
    .await;
    let result = result.map(|mut resp| {
        if let Some(shown) = admitted.shown.as_ref()
            && rt.rate_limit_headers
        {
            resp.headers_mut().extend(ratelimit_headers(shown));
        }
        resp
    });
    (name, result)
}

/// Canonicalises the request path and routes it: the route, and the canonical path if it is not
/// the one the client sent.
fn canonical_route<'r>(
    rt: &'r Runtime,
    host: Option<&str>,
    req: &Request,
) -> Result<(&'r Route, Option<String>), Refusal> {
    let invalid = |e: PathError| {
        refuse(
            "invalid_path",
            StatusCode::BAD_REQUEST,
            "invalid_path",
            e.message(),
        )
    };
    let canonical = path::canonical(req.uri().path()).map_err(invalid)?;
    let route = match rt
        .route_path(host, &canonical, req.method())
        .map_err(invalid)?
    {
        Match::Found(r) => r,
        Match::MethodNotAllowed => {
            return Err(refuse(
                "method_not_allowed",
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the path exists but not with this method",
            ));
        }
        Match::NotFound => {
            return Err(refuse(
                "route_not_found",
                StatusCode::NOT_FOUND,
                "route_not_found",
                "no route for this path",
            ));
        }
    };
    let forwarded = match canonical.into_cow() {
        Cow::Borrowed(_) => None,
        Cow::Owned(p) => Some(p),
    };
    Ok((route, forwarded))
}

/// In `refuse` mode, a request with a header its peer may not send (see [`rewrite`]) is refused
/// before routing; in `strip` mode such headers are removed in `headers::to_upstream`.
fn rewrite_policy(rt: &Runtime, peer_trusted: bool, headers: &HeaderMap) -> Result<(), Refusal> {
    if rt.rewrite_headers != RewriteMode::Refuse {
        return Ok(());
    }
    match rewrite::first_forbidden(headers, peer_trusted) {
        None => Ok(()),
        Some(name) => Err(Refusal::new(
            "forbidden_header",
            ApiError::bad_request(
                "forbidden_header",
                format!("the {name} header may not be sent to this gateway"),
            ),
        )),
    }
}

/// Tells the anomaly detector of a credential that resolved to no key (counts towards the
/// client address's failure bursts).
fn unknown_to_detector(gw: &Gateway, client: IpAddr) {
    if let Some(d) = &gw.app.anomaly {
        crate::events::anomaly::observe(
            d,
            gw.app.clock.now(),
            None,
            Some(client),
            DecisionCode::NotFound,
        );
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// A limit and its outcome, for the `RateLimit` headers.
struct Shown {
    name: Arc<str>,
    quota: Quota,
    outcome: Outcome,
}

/// What an admitted request carries on: the key, and the limit to show in the headers.
#[derive(Default)]
struct Admitted {
    key: Option<Arc<CachedKey>>,
    shown: Option<Shown>,
}

async fn admit(
    gw: &Gateway,
    rt: &Runtime,
    route: &Route,
    client: IpAddr,
    headers: &HeaderMap,
    facts: &mut audit::Facts,
) -> Result<Admitted, Refusal> {
    let m = &gw.app.metrics;
    let now_ns = gw.now_nanos();
    // Counted per IPv4 address and per IPv6 /64.
    let who = portcullis_core::ip::client_group(client);
    if rt.brute_force.enabled
        && let Some(wait) = gw.failures.blocked(&who, now_ns)
    {
        m.brute_force_refused.inc();
        return Err(too_many(
            "blocked",
            "too_many_failed_attempts",
            "too many failed authentications from this address; retry later",
            wait,
        ));
    }
    let secret = match auth::credential(headers) {
        Ok(s) => s,
        Err(e) => {
            facts.auth_failure = Some(e.code);
            return Err(Refusal::new("unauthenticated", e));
        }
    };
    // Read now, refused only once the key is known to be alive: a dead key is a 401 first.
    let tenant = auth::tenant_header(headers);
    let entry = auth::resolve(&gw.app, secret.expose_secret())
        .await
        .map_err(|e| Refusal::new("error", e))?;
    // The refusal's audit record (aggregated per address and reason) is written by `handle`
    // from `facts`.
    let fail = |reason: &'static str| {
        m.auth_failures
            .get_or_create(&crate::metrics::CodeLabel { code: reason })
            .inc();
        let hint = portcullis_core::key::hint(secret.expose_secret());
        tracing::warn!(
            reason,
            route = &*route.name,
            client = %client,
            key_hint = hint.as_deref().unwrap_or("(malformed)"),
            "gateway authentication failed"
        );
        if rt.brute_force.enabled && gw.failures.record_failure(&who, now_ns).is_some() {
            m.brute_force_blocks.inc();
            tracing::warn!(client = %client, "client address blocked after repeated authentication failures");
        }
        Refusal::new("unauthenticated", ApiError::invalid_api_key())
    };
    let key = match entry {
        Entry::Key(k) => k,
        Entry::Admin(_) => {
            unknown_to_detector(gw, client);
            facts.auth_failure = Some("admin_key_on_gateway");
            return Err(fail("admin_key_on_gateway"));
        }
        Entry::Unknown => {
            unknown_to_detector(gw, client);
            facts.auth_failure = Some("unknown_or_malformed");
            return Err(fail("unknown_or_malformed"));
        }
    };
    let owner = key.found.key.tenant_id.clone();
    let now = gw.app.clock.now();
    let subject = Subject {
        key: &key.found.key,
        tenant_status: key.found.tenant_status,
        secret_expires_at: key.found.secret_expires_at,
    };
    let requirements = Requirements {
        tenant: tenant.as_ref().ok().and_then(Option::as_ref),
        environment: route.environment,
        scopes: &route.scopes,
        ip: Some(client),
    };
    let code = decision::decide(Some(subject), &requirements, now);
    if let Some(d) = &gw.app.anomaly {
        let known = (code != DecisionCode::NotFound).then_some((&owner, key.found.key.id.as_str()));
        crate::events::anomaly::observe(d, now, known, Some(client), code);
    }
    let forbidden = |code: &'static str, msg: &'static str| {
        tracing::info!(
            key_id = %key.found.key.id,
            route = &*route.name,
            code,
            "gateway: key refused"
        );
        refuse("forbidden", StatusCode::FORBIDDEN, code, msg)
    };
    let failed = match code {
        DecisionCode::NotFound => Some("unknown_or_malformed"),
        DecisionCode::Expired => Some("expired"),
        DecisionCode::Revoked => Some("revoked"),
        _ => None,
    };
    // An unknown key reveals no tenant; an expired or revoked one is its tenant's business: its
    // tenant's chain gets the records.
    if code != DecisionCode::NotFound {
        facts.key = Some(key.clone());
    }
    if let Some(reason) = failed {
        facts.auth_failure = Some(reason);
        return Err(fail(reason));
    }
    tenant.map_err(|e| Refusal::new("unauthenticated", e))?;
    match code {
        DecisionCode::Valid
        | DecisionCode::NotFound
        | DecisionCode::Expired
        | DecisionCode::Revoked => {}
        DecisionCode::TenantMismatch => {
            return Err(forbidden(
                "tenant_mismatch",
                "X-Tenant-Id names another tenant than the key's",
            ));
        }
        DecisionCode::TenantSuspended => {
            return Err(forbidden(
                "tenant_inactive",
                "the key's tenant is suspended",
            ));
        }
        DecisionCode::EnvironmentMismatch => {
            return Err(forbidden(
                "environment_mismatch",
                "this route does not accept keys of this environment",
            ));
        }
        DecisionCode::IpNotAllowed => {
            return Err(forbidden(
                "ip_not_allowed",
                "the key may not be used from this address",
            ));
        }
        DecisionCode::InsufficientScope => {
            return Err(forbidden(
                "insufficient_scope",
                "the key lacks a scope this route requires",
            ));
        }
    }
    let shown = limit(gw, rt, route, &key, now_ns)?;
    if key
        .used
        .should_touch(now.unix_timestamp(), TOUCH_EVERY_SECONDS)
    {
        gw.app.usage.record(&key.found.key.id, now);
    }
    Ok(Admitted {
        key: Some(key),
        shown,
    })
}

/// The key's own limit and the route's policy (each counted per key), then the tenant's (its
/// own, or the configured default). Returns the tighter outcome for the headers.
///
/// A key's own limit is set through the admin API, by a root admin or by an admin key bound to
/// the key's tenant; the route's policy is the operator's. So a key's own limit never replaces
/// the policy: both apply, and the stricter refuses first.
fn limit(
    gw: &Gateway,
    rt: &Runtime,
    route: &Route,
    key: &CachedKey,
    now: u64,
) -> Result<Option<Shown>, Refusal> {
    let k = &key.found.key;
    let route_limit = route
        .policy
        .as_ref()
        .map(|p| (p.name.clone(), p.quota, format!("{}\u{0}{}", p.name, k.id)));
    let key_limit = k
        .rate_limit
        .and_then(|own| Quota::new(own.requests, own.per_seconds, own.burst).ok())
        .map(|q| (Arc::<str>::from("key"), q, k.id.clone()));
    let tenant_limit = key
        .found
        .tenant_rate_limit
        .and_then(|t| Quota::new(t.requests, t.per_seconds, t.burst).ok())
        .or(rt.tenant_quota)
        .map(|q| {
            (
                Arc::<str>::from("tenant"),
                q,
                k.tenant_id.as_str().to_owned(),
            )
        });
    let mut shown: Option<Shown> = None;
    for (limiter, which, entry) in [
        (&gw.keys, "key", key_limit),
        (&gw.keys, "key", route_limit),
        (&gw.tenants, "tenant", tenant_limit),
    ] {
        let Some((name, quota, id)) = entry else {
            continue;
        };
        let outcome = limiter.check(&id, &quota, now);
        gw.app
            .metrics
            .ratelimit_decisions
            .get_or_create(&LimiterLabels {
                limiter: which,
                result: if outcome.allowed {
                    "allowed"
                } else {
                    "limited"
                },
            })
            .inc();
        let this = Shown {
            name,
            quota,
            outcome,
        };
        if !this.outcome.allowed {
            if let Some(d) = &gw.app.anomaly {
                let now_ms = portcullis_events::anomaly::unix_millis(gw.app.clock.precise_now());
                d.observe_rate_limited(now_ms, &k.tenant_id, &k.id);
            }
            let mut r = too_many(
                "rate_limited",
                "rate_limited",
                "rate limit exceeded; retry after the time in Retry-After",
                this.outcome.retry_after_seconds,
            );
            r.headers.extend(ratelimit_headers(&this));
            return Err(r);
        }
        if shown
            .as_ref()
            .is_none_or(|s| this.outcome.remaining < s.outcome.remaining)
        {
            shown = Some(this);
        }
    }
    Ok(shown)
}

fn too_many(decision: &'static str, code: &'static str, msg: &'static str, wait: u64) -> Refusal {
    let mut r = refuse(decision, StatusCode::TOO_MANY_REQUESTS, code, msg);
    r.headers
        .push((RETRY_AFTER, HeaderValue::from(wait.max(1))));
    r
}

fn ratelimit_headers(s: &Shown) -> [(HeaderName, HeaderValue); 2] {
    let value = |v: String| HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""));
    [
        (
            RATELIMIT_POLICY.clone(),
            value(portcullis_ratelimit::policy_header_value(&s.name, &s.quota)),
        ),
        (
            RATELIMIT.clone(),
            value(portcullis_ratelimit::ratelimit_header_value(
                &s.name, &s.outcome,
            )),
        ),
    ]
}

/// Who sent the request, for the forwarding headers.
struct Peering<'a> {
    peer: IpAddr,
    peer_trusted: bool,
    host: Option<&'a str>,
}

/// Streams the request to the upstream and its answer back. `forwarded` is the canonical path
/// when it differs from the client's (the query is passed on unchanged).
async fn send(
    gw: &Gateway,
    route: &Route,
    from: Peering<'_>,
    admitted: &Admitted,
    forwarded: Option<String>,
    req: Request,
) -> Result<Response, Refusal> {
    let Peering {
        peer,
        peer_trusted,
        host,
    } = from;
    let too_large = || {
        refuse(
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is over the limit",
        )
    };
    let (mut parts, body) = req.into_parts();
    let client_version = parts.version;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body_bytes) {
        return Err(too_large());
    }
    let up = &route.upstream;
    let path_and_query = match (&forwarded, parts.uri.query()) {
        (Some(path), Some(query)) => Cow::Owned(format!("{path}?{query}")),
        (Some(path), None) => Cow::Borrowed(path.as_str()),
        (None, _) => Cow::Borrowed(parts.uri.path_and_query().map_or("/", |p| p.as_str())),
    };
    let uri: Uri = format!("http://{}{}{}", up.authority, up.base_path, path_and_query)
        .parse()
        .map_err(|_| {
            refuse(
                "invalid_path",
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "the path cannot be forwarded",
            )
        })?;
    let exceeded = Exceeded::default();
    let mut metered = Metered::new(body, route.max_body_bytes, exceeded.clone());
    if route.upload {
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let sink = gw.upload_sink();
        let route_name = route.name.clone();
        let request_id = parts
            .headers
            .get(&crate::request_id::HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let log = gw.app.audit.clone();
        let clock = gw.app.clock.clone();
        let key = admitted.key.as_ref().map(|k| {
            (
                k.found.key.tenant_id.as_str().to_owned(),
                k.found.key.id.clone(),
            )
        });
        metered = metered.measured(content_type, move |facts| {
            if log.enabled() {
                log.record(audit::upload_record(
                    clock.precise_now(),
                    &route_name,
                    &request_id,
                    key,
                    &facts,
                ));
            }
            sink(&route_name, &request_id, facts);
        });
    }
    let scopes;
    let identity = match &admitted.key {
        Some(k) => {
            let key = &k.found.key;
            scopes = key
                .scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            Some(Identity {
                tenant: key.tenant_id.as_str(),
                key_id: &key.id,
                environment: key.environment.as_str(),
                scopes,
            })
        }
        None => None,
    };
    let hop = headers::Hop {
        peer,
        peer_trusted,
        host,
        scheme: gw.scheme,
    };
    headers::to_upstream(&mut parts.headers, &hop, identity.as_ref());
    if !route.preserve_host {
        parts.headers.insert(HOST, up.host_header.clone());
    }
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let upstream_req = axum::http::Request::from_parts(parts, Body::new(metered));
    let started = Instant::now();
    let answer = tokio::time::timeout(up.request_timeout, up.client.request(upstream_req)).await;
    gw.app
        .metrics
        .gateway_upstream_duration
        .get_or_create(&RouteName {
            route: SharedLabel(route.name.clone()),
        })
        .observe(started.elapsed().as_secs_f64());
    match answer {
        Err(_) => {
            tracing::warn!(
                route = &*route.name,
                upstream = &*up.name,
                "upstream timed out"
            );
            Err(refuse(
                "upstream_timeout",
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not answer in time",
            ))
        }
        Ok(Err(_)) if exceeded.get() => Err(too_large()),
        Ok(Err(e)) if crate::listen::body::is_body_timeout(&e) => Err(Refusal::new(
            "body_timeout",
            crate::error::ApiError::body_timeout(),
        )),
        Ok(Err(e)) => {
            tracing::warn!(
                route = &*route.name,
                upstream = &*up.name,
                connect = e.is_connect(),
                error = %e,
                "upstream request failed"
            );
            Err(refuse(
                "upstream_error",
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "the upstream could not be reached",
            ))
        }
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            headers::from_upstream(&mut parts.headers);
            // The client's connection keeps its own protocol version (an HTTP/1.0 upstream must
            // not turn a keep-alive HTTP/1.1 connection into a closing one).
            parts.version = client_version;
            Ok(Response::from_parts(parts, Body::new(body)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_port() {
        assert_eq!(strip_port("api.example.com:8000"), "api.example.com");
        assert_eq!(strip_port("api.example.com"), "api.example.com");
        assert_eq!(strip_port("[::1]:8000"), "::1");
    }
}
