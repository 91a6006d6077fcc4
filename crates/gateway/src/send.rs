//! Streams an admitted request to its upstream (credential stripped, identity and forwarding
//! headers set, the canonical path) and the answer back; upstream failures become refusals.
use std::{net::IpAddr, time::Instant};

use axum::{
    body::Body,
    extract::Request,
    http::{
        StatusCode, Uri, Version,
        header::{CONTENT_LENGTH, CONTENT_TYPE, HOST},
        uri::PathAndQuery,
    },
    response::Response,
};

use super::{
    Gateway, audit, headers,
    proxy::Admitted,
    refusal::{Refusal, refuse},
    runtime::{Route, Upstream},
    upload::{Exceeded, Metered},
};
use portcullis_http::error::ApiError;
use portcullis_service::metrics::{RouteName, SharedLabel};

/// Who sent the request, for the forwarding headers.
pub(super) struct Peering<'a> {
    pub(super) peer: IpAddr,
    pub(super) peer_trusted: bool,
    pub(super) host: Option<&'a str>,
}

/// Streams the request to the upstream and its answer back. `forwarded` is the canonical path
/// when it differs from the client's (the query is passed on unchanged).
pub(super) async fn send(
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
    let uri = upstream_uri(up, forwarded.as_deref(), &parts.uri).ok_or_else(|| {
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
            .get(&portcullis_http::request_id::HEADER)
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
    let identity = admitted.key.as_ref().map(|k| &k.identity);
    let hop = headers::Hop {
        peer,
        peer_trusted,
        host,
        scheme: gw.scheme,
    };
    headers::to_upstream(&mut parts.headers, &hop, identity);
    if !route.preserve_host || !parts.headers.contains_key(HOST) {
        parts.headers.insert(HOST, up.host_header.clone());
    }
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let upstream_req = axum::http::Request::from_parts(parts, Body::new(metered));
    let started = Instant::now();
    let answer = tokio::time::timeout(up.request_timeout, up.pool.send(upstream_req)).await;
    let elapsed = started.elapsed().as_secs_f64();
    match &route.handles {
        Some(h) => h.upstream_duration.observe(elapsed),
        None => gw
            .app
            .metrics
            .gateway_upstream_duration
            .get_or_create(&RouteName {
                route: SharedLabel(route.name.clone()),
            })
            .observe(elapsed),
    }
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
        Ok(Err(e)) if portcullis_http::listen::body::is_body_timeout(&e) => {
            Err(Refusal::new("body_timeout", ApiError::body_timeout()))
        }
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

/// The upstream's request target (origin-form) of a request for `client` (routed as
/// `forwarded`, when that differs from its path): the upstream's base path, then the path and
/// the query unchanged. Without a base path or a canonicalised path, the client's path and query
/// are reused as they are (shared, not copied).
fn upstream_uri(up: &Upstream, forwarded: Option<&str>, client: &Uri) -> Option<Uri> {
    let path_and_query = match (forwarded, up.base_path.is_empty()) {
        (None, true) => client
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        (forwarded, _) => {
            let path = forwarded.unwrap_or_else(|| client.path());
            let query = client.query();
            let mut s = String::with_capacity(
                up.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
            );
            s.push_str(&up.base_path);
            s.push_str(path);
            if let Some(q) = query {
                s.push('?');
                s.push_str(q);
            }
            PathAndQuery::from_maybe_shared(bytes::Bytes::from(s)).ok()?
        }
    };
    Some(Uri::from(path_and_query))
}
