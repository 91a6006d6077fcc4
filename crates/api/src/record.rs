//! Records of requests and authentication attempts, and the `fail_closed` gate.
//!
//! The API middleware ([`layer`]) puts an [`AuditSlot`] in the request's extensions; the admin
//! extractor and the handlers fill in what they learn (the admin key, the tenant, the verified
//! key), and the middleware writes one record when the answer is ready. Error answers carry
//! their stable code in an [`ErrorCode`] response extension, which becomes the record's reason.
use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
};
use portcullis_audit::{Body, Decision, Kind, SYSTEM_CHAIN, Sealable, body::DetailWriter};
use portcullis_core::{OffsetDateTime, model::AdminKey, tenant::TenantId};
use portcullis_service::audit::log::QueuePlace;
use portcullis_service::request_id::RequestId;

use crate::{cache::CachedKey, config::ClientIpMode, state::AppState};
pub use portcullis_http::edge::{declared_length, response_length, unavailable};
pub use portcullis_http::error::ErrorCode;
pub use portcullis_service::audit::records::{auth_failure, client_ip};

/// What the handler side learnt about a request, for its audit record.
#[derive(Debug, Default)]
pub struct Facts {
    /// The tenant the request acted on (or the admin key's own tenant).
    pub tenant: Option<TenantId>,
    /// The authenticated admin key (its id is the record's `actor`).
    pub actor: Option<Arc<AdminKey>>,
    /// The key the request is about (the verified key, for `POST /v1/verify`): its id is the
    /// record's `key_id`.
    pub key: Option<Arc<CachedKey>>,
    /// `success` or `failure`, when a credential was checked.
    pub auth: Option<&'static str>,
    /// The precise reason an authentication failed (`data.auth_failure`).
    pub auth_failure: Option<&'static str>,
    /// The decision code of `POST /v1/verify` (`data.verify_code`).
    pub verify_code: Option<&'static str>,
}

impl Facts {
    /// Takes every fact `other` knows.
    pub fn merge(&mut self, other: Facts) {
        let Facts {
            tenant,
            actor,
            key,
            auth,
            auth_failure,
            verify_code,
        } = other;
        self.tenant = tenant.or(self.tenant.take());
        self.actor = actor.or(self.actor.take());
        self.key = key.or(self.key.take());
        self.auth = auth.or(self.auth);
        self.auth_failure = auth_failure.or(self.auth_failure);
        self.verify_code = verify_code.or(self.verify_code);
    }
}

/// The facts of the current request (cheap to clone). Absent outside the API router.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(pub Arc<Mutex<Facts>>);

impl AuditSlot {
    /// Changes the facts.
    pub fn with(&self, f: impl FnOnce(&mut Facts)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Paths that answer even while the audit log refuses requests (they change nothing).
fn ungated(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// A client address as the audit log keeps it: as seen (written without a copy), or its
/// pseudonym ([`client_ip`]).
#[derive(Debug)]
enum ClientIp {
    Seen(IpAddr),
    Pseudonym(String),
}

/// The `request` record of an admin / verify API request as the middleware leaves it: shared
/// or plain values, no map and no string per detail. The audit writer encodes it straight into
/// the body, which reads back as a [`Record`] with these details.
#[derive(Debug)]
struct RequestRecord {
    time: OffsetDateTime,
    tenant: Option<TenantId>,
    actor: Option<Arc<AdminKey>>,
    key: Option<Arc<CachedKey>>,
    request_id: Option<RequestId>,
    /// The stable code of an error answer.
    reason: Option<&'static str>,
    method: Method,
    /// The matched route template (`other` when none matched).
    route: Option<RouteName>,
    status: u16,
    latency_us: u64,
    bytes_in: Option<u64>,
    bytes_out: Option<u64>,
    client_ip: Option<ClientIp>,
    auth: Option<&'static str>,
    auth_failure: Option<&'static str>,
    verify_code: Option<&'static str>,
}

impl portcullis_audit::Details for &RequestRecord {
    fn write(&self, o: &mut DetailWriter<'_>) {
        o.opt_str("auth", self.auth)
            .opt_str("auth_failure", self.auth_failure)
            .opt_u64("bytes_in", self.bytes_in)
            .opt_u64("bytes_out", self.bytes_out);
        match &self.client_ip {
            Some(ClientIp::Seen(ip)) => o.ip("client_ip", *ip),
            Some(ClientIp::Pseudonym(p)) => o.str("client_ip", p),
            None => o,
        };
        o.u64("latency_us", self.latency_us)
            .str("method", self.method.as_str())
            .str(
                "route",
                self.route.as_ref().map_or("other", RouteName::as_str),
            )
            .u64("status", u64::from(self.status))
            .opt_str("verify_code", self.verify_code);
    }
}

impl Sealable for RequestRecord {
    fn chain(&self) -> &str {
        self.tenant.as_ref().map_or(SYSTEM_CHAIN, TenantId::as_str)
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
        Body {
            time: self.time,
            kind: Kind::Request,
            action: "request",
            tenant: self.tenant.as_ref().map(TenantId::as_str),
            actor: self.actor.as_ref().map(|a| a.id.as_str()),
            key_id: self.key.as_ref().map(|k| k.found.key.id.as_str()),
            request_id,
            decision: Some(if self.status < 400 {
                Decision::Allow
            } else {
                Decision::Deny
            }),
            reason: self.reason,
            data: self,
        }
        .write(out);
    }
}

/// The route of a request as its record names it: the router's match, or a template the request
/// was dispatched to without the router (`POST /v1/verify`).
#[derive(Debug, Clone)]
pub enum RouteName {
    Matched(MatchedPath),
    Template(&'static str),
}

impl RouteName {
    fn as_str(&self) -> &str {
        match self {
            Self::Matched(p) => p.as_str(),
            Self::Template(t) => t,
        }
    }
}

/// A request whose record is under way: what its record needs of the request, taken before the
/// handler runs.
#[derive(Debug)]
pub struct Begun {
    place: QueuePlace,
    started: Instant,
    time: OffsetDateTime,
    method: Method,
    route: Option<RouteName>,
    bytes_in: Option<u64>,
    /// The socket peer, or the client a trusted proxy forwarded for (`trusted_proxies`).
    peer: Option<IpAddr>,
}

/// The start of a request's record: refused with `audit_unavailable` while the log cannot
/// record (`fail_closed`); `None` when there is no record to write (the log is off, or the path
/// changes nothing).
pub fn begin<'a>(
    state: &'a AppState,
    req: &Request,
    route: Option<RouteName>,
    peer: Option<SocketAddr>,
) -> impl Future<Output = Result<Option<Begun>, Response>> + Send + use<'a> {
    // Taken before the wait: a request (its body) is not `Sync`.
    let ungated = ungated(req.uri().path());
    let method = req.method().clone();
    let bytes_in = declared_length(req.headers());
    let peer = peer
        .map(|c| portcullis_http::client::client_ip(c.ip(), req.headers(), &state.trusted_proxies));
    async move {
        if ungated {
            return Ok(None);
        }
        let Ok(place) = state.audit.admit().await else {
            return Err(unavailable().into_response());
        };
        if !state.audit.enabled() {
            return Ok(None);
        }
        Ok(Some(Begun {
            place,
            started: Instant::now(),
            time: state.clock.precise_now(),
            method,
            route,
            bytes_in,
            peer,
        }))
    }
}

/// Writes the record of a request begun with [`begin`], answered with `resp`, with what the
/// handler side learnt of it.
pub fn finish(state: &AppState, begun: Begun, facts: Facts, resp: &Response) {
    let client_ip = begun.peer.map(|ip| match state.audit_client_ip {
        ClientIpMode::Store => ClientIp::Seen(portcullis_core::ip::canonical(ip)),
        mode => ClientIp::Pseudonym(client_ip(
            mode,
            &state.pepper,
            facts.tenant.as_ref().map(TenantId::as_str),
            ip,
        )),
    });
    let r = RequestRecord {
        time: begun.time,
        tenant: facts.tenant,
        actor: facts.actor,
        key: facts.key,
        request_id: crate::request_id::current_shared(),
        reason: resp.extensions().get::<ErrorCode>().map(|c| c.0),
        method: begun.method,
        route: begun.route,
        status: resp.status().as_u16(),
        latency_us: u64::try_from(begun.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        bytes_in: begun.bytes_in,
        bytes_out: response_length(resp),
        client_ip,
        auth: facts.auth,
        auth_failure: facts.auth_failure,
        verify_code: facts.verify_code,
    };
    state.audit.record_in(begun.place, r);
}

/// The API router's audit middleware: [`begin`], the handler (which fills in the request's
/// [`AuditSlot`]), [`finish`].
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .cloned()
        .map(RouteName::Matched);
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let begun = match begin(&state, &req, route, peer).await {
        Ok(Some(b)) => b,
        Ok(None) => return next.run(req).await,
        Err(refused) => return refused,
    };
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let resp = next.run(req).await;
    let facts = std::mem::take(&mut *slot.0.lock().unwrap_or_else(|e| e.into_inner()));
    finish(&state, begun, facts, &resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_audit::Record;

    #[test]
    fn the_body_reads_back_as_the_record_it_stands_for() {
        let time = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
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
            let typed = RequestRecord {
                time,
                tenant: Some(TenantId::parse("acme").unwrap()),
                actor: None,
                key: None,
                request_id: Some(RequestId::Given(Arc::from("req_1"))),
                reason: Some("invalid_api_key"),
                method: Method::POST,
                route: None,
                status: 401,
                latency_us: 1234,
                bytes_in: Some(17),
                bytes_out: None,
                client_ip: Some(ip),
                auth: Some("failure"),
                auth_failure: Some("revoked"),
                verify_code: Some("VALID"),
            };
            let mut expected = Record::new(time, Kind::Request, "request")
                .with("verify_code", "VALID")
                .with("auth_failure", "revoked")
                .with("method", "POST")
                .with("route", "other")
                .with("status", 401)
                .with("latency_us", 1234)
                .with("bytes_in", 17)
                .with("client_ip", text)
                .with("auth", "failure");
            expected.tenant = Some("acme".to_owned());
            expected.request_id = Some("req_1".to_owned());
            expected.decision = Some(Decision::Deny);
            expected.reason = Some("invalid_api_key".to_owned());
            let body = typed.to_body();
            assert_eq!(Record::from_body(&body).unwrap(), expected);
            let json = serde_json::to_vec(&expected).unwrap();
            assert!(
                body.len() * 2 < json.len(),
                "{} of {}",
                body.len(),
                json.len()
            );
            assert_eq!(typed.chain(), "acme");
        }
    }
}
