//! Records of requests and authentication attempts, and the `fail_closed` gate.
//!
//! The API middleware ([`layer`]) puts an [`AuditSlot`] in the request's extensions; the admin
//! extractor and the handlers fill in what they learn (the admin key, the tenant, the verified
//! key), and the middleware writes one record when the answer is ready. Error answers carry
//! their stable code in an [`ErrorCode`] response extension, which becomes the record's reason.
use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use portcullis_audit::{Decision, Kind, Record};
use portcullis_core::tenant::TenantId;
use serde_json::{Map, Value};

use crate::state::AppState;
pub use portcullis_http::edge::{declared_length, response_length, unavailable};
pub use portcullis_http::error::ErrorCode;
pub use portcullis_service::audit::records::{auth_failure, client_ip};

/// What the handler side learnt about a request, for its audit record.
#[derive(Debug, Default)]
pub struct Facts {
    /// The tenant the request acted on (or the admin key's own tenant).
    pub tenant: Option<TenantId>,
    /// The authenticated admin key.
    pub actor: Option<String>,
    /// The key the request is about (the verified key, for `POST /v1/verify`).
    pub key_id: Option<String>,
    /// `success` or `failure`, when a credential was checked.
    pub auth: Option<&'static str>,
    pub data: Map<String, Value>,
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

/// The API's audit middleware: refuses requests in `fail_closed` mode while the log cannot
/// record, and writes one record per request.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if ungated(path) {
        return next.run(req).await;
    }
    let Ok(place) = state.audit.admit().await else {
        return unavailable().into_response();
    };
    if !state.audit.enabled() {
        return next.run(req).await;
    }
    let started = Instant::now();
    let time = state.clock.precise_now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let bytes_in = declared_length(req.headers());
    // The socket peer, or the client a trusted proxy forwarded for (`trusted_proxies`).
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| {
            portcullis_http::client::client_ip(c.0.ip(), req.headers(), &state.trusted_proxies)
        });
    let request_id = crate::request_id::current();
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    let facts = std::mem::take(&mut *slot.0.lock().unwrap_or_else(|e| e.into_inner()));
    let mut r = Record::new(time, Kind::Request, "request");
    r.tenant = facts.tenant.map(|t| t.as_str().to_owned());
    r.actor = facts.actor;
    r.key_id = facts.key_id;
    r.request_id = request_id;
    r.decision = Some(if status < 400 {
        Decision::Allow
    } else {
        Decision::Deny
    });
    r.reason = code.map(str::to_owned);
    r.data = facts.data;
    r.data.insert("method".into(), method.into());
    r.data.insert("route".into(), route.into());
    r.data.insert("status".into(), status.into());
    r.data.insert(
        "latency_us".into(),
        u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .into(),
    );
    if let Some(n) = bytes_in {
        r.data.insert("bytes_in".into(), n.into());
    }
    if let Some(n) = response_length(&resp) {
        r.data.insert("bytes_out".into(), n.into());
    }
    if let Some(ip) = peer {
        let ip = client_ip(
            state.audit_client_ip,
            &state.pepper,
            r.tenant.as_deref(),
            ip,
        );
        r.data.insert("client_ip".into(), ip.into());
    }
    if let Some(a) = facts.auth {
        r.data.insert("auth".into(), a.into());
    }
    state.audit.record_in(place, r);
    resp
}
