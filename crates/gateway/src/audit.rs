//! The gateway's audit records: one `gateway.request` per request with a valid key or on a
//! public route, a `gateway.upload` per measured upload body, and the refusals of requests
//! without a valid credential (no route, a bad path, no or a bad key, a blocked address)
//! counted into `gateway.refused` aggregates per client address and reason
//! ([`crate::audit::refusals`]), so that such traffic, which anyone can send, cannot fill the
//! disk. Built off the answer path's critical work (after the response is ready) and handed to
//! the audit log, which never waits.
use std::{net::IpAddr, sync::Arc, time::Instant};

use axum::{
    extract::Request,
    http::{Method, Uri},
};
use portcullis_audit::{Body, Decision, Kind, Record, SYSTEM_CHAIN, Sealable, body::DetailWriter};
use portcullis_core::OffsetDateTime;
use portcullis_service::request_id::RequestId;
use serde_json::Value;

use super::{Gateway, headers, upload::UploadFacts};
use portcullis_http::edge as api;
use portcullis_service::{
    audit::{QueuePlace, records::client_ip, refusals::Refused},
    cache::CachedKey,
    config::ClientIpMode,
};

/// What the request path learnt for the request's record.
#[derive(Default)]
pub(super) struct Facts {
    /// The client address (after `trusted_proxies`), once a route matched.
    pub client: Option<IpAddr>,
    /// The key the credential matched (revoked and expired ones included; not an unknown one):
    /// its tenant's chain gets the records.
    pub key: Option<Arc<CachedKey>>,
    /// The precise reason an authentication failed (the answer says `invalid_api_key`).
    pub auth_failure: Option<&'static str>,
    /// The canonical path that was routed and forwarded, when it differs from the one the client
    /// sent (the record shows what was authorised).
    pub canonical_path: Option<Box<str>>,
}

/// What is known when a request arrives.
pub(super) struct Started {
    at: Instant,
    /// The client address (after `trusted_proxies`), also of requests no route matched.
    client: IpAddr,
    time: OffsetDateTime,
    method: Method,
    /// The request's URI (shared bytes, not copied); the record keeps its path only.
    uri: Uri,
    bytes_in: Option<u64>,
}

impl Started {
    /// `at`: when the request's handling started (the latency is measured from it).
    pub fn of(gw: &Gateway, peer: IpAddr, req: &Request, at: Instant) -> Self {
        Self {
            at,
            client: headers::client_ip(peer, req.headers(), &gw.runtime.load().trusted_proxies),
            time: gw.app.clock.precise_now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            bytes_in: api::declared_length(req.headers()),
        }
    }
}

/// The answer a request got.
pub(super) struct Answer<'a> {
    pub route: &'a Arc<str>,
    pub status: u16,
    /// The decision label of the metrics (`allowed`, `forbidden`, …).
    pub outcome: &'static str,
    /// The error code of a refusal.
    pub code: Option<&'static str>,
    pub bytes_out: Option<u64>,
}

/// The `gateway.request` record as the request path leaves it: what it knows, shared or
/// copied as plain values, with no map and no string per detail. The audit writer encodes it
/// straight into the body, which reads back as a [`Record`] with these details.
#[derive(Debug)]
pub(super) struct RequestRecord {
    time: OffsetDateTime,
    key: Option<Arc<CachedKey>>,
    request_id: Option<RequestId>,
    reason: Option<&'static str>,
    method: Method,
    route: Arc<str>,
    uri: Uri,
    /// The routed path when it differs from `uri`'s.
    canonical_path: Option<Box<str>>,
    status: u16,
    outcome: &'static str,
    latency_us: u64,
    client_ip: ClientIp,
    bytes_in: Option<u64>,
    bytes_out: Option<u64>,
    auth_failure: Option<&'static str>,
}

/// A client address as the audit log keeps it: as seen (written without a copy), or its
/// pseudonym ([`api::client_ip`]).
#[derive(Debug)]
enum ClientIp {
    Seen(IpAddr),
    Pseudonym(String),
}

/// The details of a `gateway.request` record (`data` of its body), written in this order.
struct Details<'a> {
    method: &'a str,
    route: &'a str,
    path: &'a str,
    status: u16,
    outcome: &'a str,
    latency_us: u64,
    client_ip: &'a ClientIp,
    environment: Option<&'a str>,
    bytes_in: Option<u64>,
    bytes_out: Option<u64>,
    auth_failure: Option<&'a str>,
}

impl portcullis_audit::Details for Details<'_> {
    fn write(&self, o: &mut DetailWriter<'_>) {
        o.str("method", self.method)
            .str("route", self.route)
            .str("path", self.path)
            .u64("status", u64::from(self.status))
            .str("outcome", self.outcome)
            .u64("latency_us", self.latency_us);
        match self.client_ip {
            ClientIp::Seen(ip) => o.ip("client_ip", *ip),
            ClientIp::Pseudonym(p) => o.str("client_ip", p),
        };
        o.opt_str("environment", self.environment)
            .opt_u64("bytes_in", self.bytes_in)
            .opt_u64("bytes_out", self.bytes_out)
            .opt_str("auth_failure", self.auth_failure);
    }
}

impl RequestRecord {
    fn tenant(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.found.key.tenant_id.as_str())
    }
}

impl Sealable for RequestRecord {
    fn chain(&self) -> &str {
        self.tenant().unwrap_or(SYSTEM_CHAIN)
    }

    fn time(&self) -> OffsetDateTime {
        self.time
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        portcullis_service::request_id::with_optional(self.request_id.as_ref(), |id| {
            self.write_body_with(id, out);
        });
    }
}

impl RequestRecord {
    fn write_body_with(&self, request_id: Option<&str>, out: &mut Vec<u8>) {
        let key = self.key.as_ref().map(|k| &k.found.key);
        Body {
            time: self.time,
            kind: Kind::Request,
            action: "gateway.request",
            tenant: self.tenant(),
            actor: None,
            key_id: key.map(|k| k.id.as_str()),
            request_id,
            decision: Some(if self.reason.is_none() {
                Decision::Allow
            } else {
                Decision::Deny
            }),
            reason: self.reason,
            data: Details {
                method: self.method.as_str(),
                route: &self.route,
                path: self
                    .canonical_path
                    .as_deref()
                    .unwrap_or_else(|| self.uri.path()),
                status: self.status,
                outcome: self.outcome,
                latency_us: self.latency_us,
                client_ip: &self.client_ip,
                environment: key.map(|k| k.environment.as_str()),
                bytes_in: self.bytes_in,
                bytes_out: self.bytes_out,
                auth_failure: self.auth_failure,
            },
        }
        .write(out);
    }
}

/// The `gateway.request` record.
fn request_record(
    gw: &Gateway,
    started: Started,
    facts: Facts,
    answer: Answer<'_>,
) -> RequestRecord {
    let client = facts.client.unwrap_or(started.client);
    let client_ip = match gw.app.audit_client_ip {
        ClientIpMode::Store => ClientIp::Seen(portcullis_core::ip::canonical(client)),
        mode => ClientIp::Pseudonym(client_ip(
            mode,
            &gw.app.pepper,
            facts.key.as_ref().map(|k| k.found.key.tenant_id.as_str()),
            client,
        )),
    };
    RequestRecord {
        time: started.time,
        key: facts.key,
        request_id: portcullis_service::request_id::current_shared(),
        reason: answer.code,
        method: started.method,
        route: answer.route.clone(),
        uri: started.uri,
        canonical_path: facts.canonical_path,
        status: answer.status,
        outcome: answer.outcome,
        latency_us: u64::try_from(started.at.elapsed().as_micros()).unwrap_or(u64::MAX),
        client_ip,
        bytes_in: started.bytes_in,
        bytes_out: answer.bytes_out,
        auth_failure: facts.auth_failure,
    }
}

/// Refusals (by their metrics decision label) that happen before any valid credential is known:
/// counted into aggregates rather than recorded one by one.
const AGGREGATED: [&str; 5] = [
    "invalid_path",
    "route_not_found",
    "method_not_allowed",
    "unauthenticated",
    "blocked",
];

/// Hands a request's record to the audit log. A refusal of a request without a valid key
/// (none, an unknown, revoked or expired one, an admin key, a blocked address, no route) is
/// counted in its `gateway.refused` aggregate (per client address and reason, one record per
/// window); anything else, and every request with a valid key (allowed, or refused by scope or
/// limit), is its own `gateway.request` record, in the place reserved at admission.
pub(super) fn record(
    gw: &Gateway,
    place: QueuePlace,
    started: Started,
    facts: Facts,
    answer: Answer<'_>,
) {
    let valid_key = facts.key.is_some() && facts.auth_failure.is_none();
    if valid_key || !AGGREGATED.contains(&answer.outcome) {
        let r = request_record(gw, started, facts, answer);
        gw.app.audit.record_in(place, r);
        return;
    }
    // The refused request's place in the queue is given back: its aggregate is written by the
    // audit writer itself.
    drop(place);
    let client = portcullis_core::ip::canonical(facts.client.unwrap_or(started.client));
    let key = facts.key.as_ref().map(|k| &k.found.key);
    let tenant = key.map(|k| k.tenant_id.as_str());
    let authenticating = matches!(answer.outcome, "unauthenticated" | "blocked");
    let refused = Refused {
        client,
        reason: facts.auth_failure.or(answer.code).unwrap_or(answer.outcome),
        auth: authenticating,
        key: key.map(|k| (k.tenant_id.as_str(), k.id.as_str())),
        route: authenticating.then_some(&**answer.route),
        method: started.method.as_str(),
        path: started.uri.path(),
        status: answer.status,
        time: started.time,
    };
    gw.app.audit.refused(&refused, || {
        client_ip(gw.app.audit_client_ip, &gw.app.pepper, tenant, client)
    });
}

/// The `gateway.upload` record of an upload's facts (same request id as its `gateway.request`).
pub(super) fn upload_record(
    time: OffsetDateTime,
    route: &str,
    request_id: &str,
    key: Option<(String, String)>,
    facts: &UploadFacts,
) -> Record {
    let mut r = Record::new(time, Kind::Request, "gateway.upload");
    if let Some((tenant, key_id)) = key {
        r.tenant = Some(tenant);
        r.key_id = Some(key_id);
    }
    r.request_id = (!request_id.is_empty()).then(|| request_id.to_owned());
    r.decision = Some(Decision::Allow);
    r.with("route", route)
        .with("bytes", facts.bytes)
        .with(
            "content_type",
            facts.content_type.clone().map_or(Value::Null, Into::into),
        )
        .with(
            "sha256",
            facts.sha256.clone().map_or(Value::Null, Into::into),
        )
        .with("complete", facts.complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(client_ip: ClientIp) -> RequestRecord {
        RequestRecord {
            time: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            key: None,
            request_id: Some(RequestId::Given(Arc::from("req_1"))),
            reason: Some("forbidden"),
            method: Method::PATCH,
            route: Arc::from("orders \"eu\""),
            uri: Uri::from_static("/v1/orders/7?x=1"),
            canonical_path: None,
            status: 403,
            outcome: "forbidden",
            latency_us: 1234,
            client_ip,
            bytes_in: Some(0),
            bytes_out: None,
            auth_failure: None,
        }
    }

    #[test]
    fn the_body_reads_back_as_the_record_it_stands_for() {
        for (ip, text) in [
            (
                ClientIp::Seen("203.0.113.9".parse().unwrap()),
                "203.0.113.9",
            ),
            (
                ClientIp::Seen("2001:db8::7".parse().unwrap()),
                "2001:db8::7",
            ),
            (ClientIp::Pseudonym("ip_ab12".to_owned()), "ip_ab12"),
        ] {
            let body = record(ip).to_body();
            let mut expected = Record::new(
                OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
                Kind::Request,
                "gateway.request",
            )
            .with("method", "PATCH")
            .with("route", "orders \"eu\"")
            .with("path", "/v1/orders/7")
            .with("status", 403)
            .with("outcome", "forbidden")
            .with("latency_us", 1234)
            .with("client_ip", text)
            .with("bytes_in", 0);
            expected.request_id = Some("req_1".to_owned());
            expected.decision = Some(Decision::Deny);
            expected.reason = Some("forbidden".to_owned());
            assert_eq!(Record::from_body(&body).unwrap(), expected);
        }
    }
}
