//! The gateway's request path: canonical path → route → brute-force check → credential →
//! decision → rate limits ([`super::limits`]) → upstream ([`super::send`]), with the body streamed
//! both ways. Every refusal is the uniform JSON error ([`super::refusal`]).
use std::{borrow::Cow, net::IpAddr, sync::Arc, time::Instant};

use axum::{
    extract::Request,
    http::{HeaderMap, StatusCode, header::HOST},
    response::{IntoResponse, Response},
};

use super::{
    Gateway, audit, headers,
    limits::{Shown, limit, ratelimit_headers},
    metrics,
    path::{self, PathError},
    refusal::{Refusal, refuse, too_many},
    rewrite::{self, RewriteMode},
    runtime::{Match, Route, Runtime},
    send::{Peering, send},
};
use portcullis_http::{credential, error::ApiError};
use portcullis_service::{
    admission::{self, Needs},
    cache::CachedKey,
    metrics::{GatewayLabels, SharedLabel},
};

/// The route label of requests no route matched.
static UNMATCHED: std::sync::LazyLock<Arc<str>> =
    std::sync::LazyLock::new(|| Arc::from("unmatched"));

/// The proxy handler: every request of the gateway listener.
pub async fn handle(gw: Arc<Gateway>, peer: std::net::SocketAddr, req: Request) -> Response {
    let Ok(place) = gw.app.audit.admit().await else {
        let resp = portcullis_http::edge::unavailable().into_response();
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
    let (matched, result) = forward(&gw, &rt, peer.ip(), req, &mut facts).await;
    let (resp, decision, code) = match result {
        Ok(resp) => (resp, "allowed", None),
        Err(r) => {
            let (d, c) = (r.decision, r.error.code);
            (r.into_response(), d, Some(c))
        }
    };
    let name = matched.map_or(&*UNMATCHED, |r| &r.name);
    let status = resp.status().as_u16();
    let handles = matched.and_then(|r| r.handles.as_ref());
    metrics::observe(m, name, handles, status, decision, start.elapsed());
    if let Some(started) = started {
        let bytes_out = portcullis_http::edge::response_length(&resp);
        let answer = audit::Answer {
            route: name,
            status,
            outcome: decision,
            code,
            bytes_out,
        };
        audit::record(&gw, place, started, facts, answer);
    }
    resp
}

/// The route the request matched (if any) and its answer.
async fn forward<'r>(
    gw: &Gateway,
    rt: &'r Runtime,
    peer: IpAddr,
    req: Request,
    facts: &mut audit::Facts,
) -> (Option<&'r Route>, Result<Response, Refusal>) {
    let peer_trusted = headers::is_trusted(peer, &rt.trusted_proxies);
    if let Err(r) = rewrite_policy(rt, peer_trusted, req.headers()) {
        return (None, Err(r));
    }
    // The Host header's value is shared with the request (not copied); the URI's host is the
    // fallback (an absolute-form request without one).
    let host_header = req.headers().get(HOST).cloned();
    let header_host = host_header.as_ref().and_then(|h| h.to_str().ok());
    let uri_host = header_host
        .is_none()
        .then(|| req.uri().host().map(str::to_owned))
        .flatten();
    let host = header_host.or(uri_host.as_deref()).map(strip_port);
    // The one path used from here on: routed, and sent upstream (`forwarded`: only if it differs
    // from what the client sent).
    let (route, forwarded) = match canonical_route(rt, host, &req) {
        Ok(found) => found,
        Err(r) => return (None, Err(r)),
    };
    let name = Some(route);
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
            host,
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

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// What an admitted request carries on: the key, and the limit to show in the headers.
#[derive(Default)]
pub(super) struct Admitted {
    pub(super) key: Option<Arc<CachedKey>>,
    pub(super) shown: Option<Shown>,
}

/// The admission pipeline at the gateway: the brute-force block of the client's address, the
/// credential ([`admission::tenant_key`]: resolution and decision), then the rate limits.
async fn admit(
    gw: &Gateway,
    rt: &Runtime,
    route: &Route,
    client: IpAddr,
    headers: &HeaderMap,
    facts: &mut audit::Facts,
) -> Result<Admitted, Refusal> {
    let now_ns = gw.now_nanos();
    // Counted per IPv4 address and per IPv6 /64.
    let who = portcullis_core::ip::client_group(client);
    if rt.brute_force.enabled
        && let Some(wait) = gw.failures.blocked(&who, now_ns)
    {
        gw.app.metrics.brute_force_refused.inc();
        return Err(too_many(
            "blocked",
            "too_many_failed_attempts",
            "too many failed authentications from this address; retry later",
            wait,
        ));
    }
    let presented = match credential::presented(headers) {
        Ok(p) => p,
        Err(e) => {
            facts.auth_failure = Some(e.code);
            return Err(Refusal::new("unauthenticated", e));
        }
    };
    let needs = Needs {
        tenant: None,
        environment: route.environment,
        scopes: &route.scopes,
        ip: Some(client),
    };
    let key = match admission::tenant_key(&gw.app, presented, needs).await {
        Ok(key) => key,
        Err(r) => return Err(refused(gw, rt, &who, now_ns, r, facts)),
    };
    facts.key = Some(key.clone());
    let shown = limit(gw, rt, route, &key, now_ns)?;
    Ok(Admitted {
        key: Some(key),
        shown,
    })
}

/// A refusal of the admission pipeline as the gateway answers it: its audit facts noted (the
/// refused key's tenant chain gets the record), and a failed authentication counted towards
/// its client address's block.
fn refused(
    gw: &Gateway,
    rt: &Runtime,
    who: &IpAddr,
    now_ns: u64,
    refusal: admission::Refusal,
    facts: &mut audit::Facts,
) -> Refusal {
    let decision = match &refusal {
        admission::Refusal::Unauthenticated(f) => {
            facts.auth_failure = Some(f.reason);
            facts.key = f.key.clone();
            if rt.brute_force.enabled && gw.failures.record_failure(who, now_ns).is_some() {
                gw.app.metrics.brute_force_blocks.inc();
                tracing::warn!(client = %who, "client address blocked after repeated authentication failures");
            }
            "unauthenticated"
        }
        admission::Refusal::InvalidTenantHeader { key } => {
            facts.key = key.clone();
            "unauthenticated"
        }
        admission::Refusal::Forbidden { key, .. } => {
            facts.key = Some(key.clone());
            "forbidden"
        }
        _ => "error",
    };
    Refusal::new(decision, refusal.into())
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
