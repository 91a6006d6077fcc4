//! The gateway's audit records: one `gateway.request` per request, an `auth.failure` per failed
//! authentication, a `gateway.upload` per measured upload body. Built off the answer path's
//! critical work (after the response is ready) and handed to the audit queue, which never waits.
use std::{net::IpAddr, sync::Arc, time::Instant};

use axum::extract::Request;
use portcullis_audit::{Decision, Kind, Record};
use portcullis_core::{OffsetDateTime, tenant::TenantId};
use serde_json::Value;

use super::{Gateway, upload::UploadFacts};
use crate::{audit::request as api, cache::CachedKey};

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
}

/// What is known when a request arrives.
pub(super) struct Started {
    at: Instant,
    time: OffsetDateTime,
    method: String,
    path: String,
    bytes_in: Option<u64>,
}

impl Started {
    pub fn of(gw: &Gateway, req: &Request) -> Self {
        Self {
            at: Instant::now(),
            time: gw.app.clock.precise_now(),
            method: req.method().as_str().to_owned(),
            path: req.uri().path().to_owned(),
            bytes_in: api::declared_length(req.headers()),
        }
    }
}

/// The answer a request got.
pub(super) struct Answer<'a> {
    pub route: &'a str,
    pub status: u16,
    /// The decision label of the metrics (`allowed`, `forbidden`, …).
    pub outcome: &'static str,
    /// The error code of a refusal.
    pub code: Option<&'static str>,
    pub bytes_out: Option<u64>,
}

/// The `gateway.request` record.
pub(super) fn request_record(
    gw: &Gateway,
    peer: IpAddr,
    started: Started,
    facts: Facts,
    answer: Answer<'_>,
) -> Record {
    let mut r = Record::new(started.time, Kind::Request, "gateway.request");
    let key = facts.key.as_ref().map(|k| &k.found.key);
    r.tenant = key.map(|k| k.tenant_id.as_str().to_owned());
    r.key_id = key.map(|k| k.id.clone());
    r.request_id = crate::request_id::current();
    r.decision = Some(if answer.code.is_none() {
        Decision::Allow
    } else {
        Decision::Deny
    });
    r.reason = answer.code.map(str::to_owned);
    let client = api::client_ip(
        gw.app.audit_client_ip,
        &gw.app.pepper,
        r.tenant.as_deref(),
        facts.client.unwrap_or(peer),
    );
    let latency = u64::try_from(started.at.elapsed().as_micros()).unwrap_or(u64::MAX);
    r = r
        .with("method", started.method)
        .with("route", answer.route)
        .with("path", started.path)
        .with("status", answer.status)
        .with("outcome", answer.outcome)
        .with("latency_us", latency)
        .with("client_ip", client);
    if let Some(k) = key {
        r = r.with("environment", k.environment.as_str());
    }
    if let Some(n) = started.bytes_in {
        r = r.with("bytes_in", n);
    }
    if let Some(n) = answer.bytes_out {
        r = r.with("bytes_out", n);
    }
    if let Some(a) = facts.auth_failure {
        r = r.with("auth_failure", a);
    }
    r
}

/// An `auth.failure` record of the gateway: the reason, the key's hint (never the secret), the
/// route and the client address.
pub(super) fn auth_failure_record(
    gw: &Gateway,
    route: &str,
    client: IpAddr,
    reason: &str,
    owner: Option<&TenantId>,
    hint: Option<String>,
) -> Record {
    let ip = api::client_ip(
        gw.app.audit_client_ip,
        &gw.app.pepper,
        owner.map(TenantId::as_str),
        client,
    );
    api::auth_failure(
        gw.app.clock.precise_now(),
        owner,
        reason,
        hint,
        crate::request_id::current(),
    )
    .with("route", route)
    .with("client_ip", ip)
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
