//! `POST /v1/verify`: for services that check keys themselves. Needs an admin key with
//! `keys:verify`. Answers 200 with a decision code for every well-formed question: the precise
//! reason a key fails is for authorised callers only.
use std::{
    borrow::Cow,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use portcullis_core::{
    ExposeSecret, OffsetDateTime, SecretString,
    decision::DecisionCode,
    scope::{self, Scope},
    tenant::{Environment, TenantId},
};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use portcullis_service::{
    admission::{self, Evaluation, Needs},
    metrics::CodeLabel,
};

use crate::{
    auth::Admin,
    cache::CachedKey,
    error::ApiError,
    metrics::VerifyHandles,
    record::{self, Facts, RouteName},
    state::AppState,
};

/// The question, its text borrowed from the request body where it holds no escapes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest<'a> {
    /// Held in a redacting, zeroizing type like every secret.
    pub key: SecretString,
    #[serde(default, borrow)]
    pub tenant: Option<Text<'a>>,
    #[serde(default)]
    pub environment: Option<Environment>,
    #[serde(default, borrow)]
    pub scopes: Vec<Text<'a>>,
    #[serde(default, borrow)]
    pub ip: Option<Text<'a>>,
}

/// A string of the question, borrowed from the body where it holds no escapes. serde borrows a
/// `Cow<str>` only as a field of its own, not inside an `Option` or a `Vec`: hence the newtype.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The answer: the decision code and, for a key the caller may learn about, the key's facts,
/// serialised by reference from the cached key (nothing of it is copied per request).
#[derive(Debug)]
pub struct VerifyResponse {
    pub code: DecisionCode,
    /// The key the answer describes (none for `NOT_FOUND` / `TENANT_MISMATCH`).
    pub key: Option<Arc<CachedKey>>,
    /// The required scopes the key lacks (only for an invalid answer).
    pub missing_scopes: Vec<Scope>,
}

/// The JSON shape of [`VerifyResponse`], borrowed.
#[derive(Serialize)]
struct View<'a> {
    valid: bool,
    code: DecisionCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a TenantId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<Environment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<&'a [Scope]>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    expires_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "<[Scope]>::is_empty")]
    missing_scopes: &'a [Scope],
}

impl Serialize for VerifyResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let key = self.key.as_ref().map(|k| &k.found.key);
        View {
            valid: key.is_some() && self.code.is_valid(),
            code: self.code,
            key_id: key.map(|k| k.id.as_str()),
            tenant: key.map(|k| &k.tenant_id),
            environment: key.map(|k| k.environment),
            name: key.map(|k| k.name.as_str()),
            scopes: key.map(|k| k.scopes.as_slice()),
            expires_at: key.and_then(|k| k.expires_at),
            external_id: key.and_then(|k| k.external_id.as_deref()),
            metadata: key.map(|k| &k.metadata),
            missing_scopes: &self.missing_scopes,
        }
        .serialize(s)
    }
}

impl VerifyResponse {
    fn bare(code: DecisionCode) -> Self {
        Self {
            code,
            key: None,
            missing_scopes: Vec::new(),
        }
    }
}

/// `POST /v1/verify` as a route of the router (the listener answers it by [`direct`]).
pub async fn verify(
    State(state): State<AppState>,
    admin: Admin,
    req: Request,
) -> Result<Json<VerifyResponse>, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = crate::body::json_bytes(&parts.headers, body, &state).await?;
    let mut facts = Facts::default();
    let answer = match crate::body::parse(&bytes) {
        Ok(question) => decide(&state, &admin, question, None, &mut facts).await,
        Err(e) => Err(e),
    };
    if let Some(slot) = &admin.audit {
        slot.with(|f| f.merge(facts));
    }
    answer.map(Json)
}

/// `POST /v1/verify` answered straight from the listener, without the router and its
/// middleware: the same checks, answer, metrics and audit record as any route ([`record::begin`],
/// [`Admin::authenticate`], [`crate::body::json`], [`metrics::observe`], [`record::finish`]).
pub async fn direct(
    state: AppState,
    handles: &VerifyHandles,
    req: Request,
    peer: SocketAddr,
) -> Response {
    let route = RouteName::Template(crate::routes::VERIFY);
    let begun = match record::begin(&state, &req, Some(route), Some(peer)).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let started = std::time::Instant::now();
    let mut facts = Facts::default();
    let (parts, body) = req.into_parts();
    let answer = async {
        let admin = Admin::authenticate(&state, &parts.headers, &mut facts).await?;
        let bytes = crate::body::json_bytes(&parts.headers, body, &state).await?;
        let question = crate::body::parse(&bytes)?;
        decide(&state, &admin, question, Some(&handles.valid), &mut facts).await
    }
    .await;
    let resp = match answer {
        Ok(answer) => json_response(&answer),
        Err(e) => e.into_response(),
    };
    handles.observe(&state, resp.status().as_u16(), started.elapsed());
    if let Some(begun) = begun {
        record::finish(&state, begun, facts, &resp);
    }
    resp
}

/// A 200 answer with `value` as its JSON body: written on the stack when it fits (the body is
/// then one exact copy), else into a buffer of its own.
fn json_response(value: &VerifyResponse) -> Response {
    let mut stack = [0u8; 1024];
    let mut cursor = std::io::Cursor::new(&mut stack[..]);
    let body = match serde_json::to_writer(&mut cursor, value) {
        Ok(()) => {
            let len = usize::try_from(cursor.position()).unwrap_or(0);
            Ok(axum::body::Bytes::copy_from_slice(&stack[..len]))
        }
        Err(_) => serde_json::to_vec(value).map(axum::body::Bytes::from),
    };
    match body {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(_) => ApiError::internal("the answer could not be written").into_response(),
    }
}

/// The answer to `req`, asked by `admin`; what the request's audit record needs goes to `facts`.
async fn decide(
    state: &AppState,
    admin: &Admin,
    req: VerifyRequest<'_>,
    valid: Option<&Counter>,
    facts: &mut Facts,
) -> Result<VerifyResponse, ApiError> {
    admin.require("keys:verify")?;
    let tenant = match (&req.tenant, &admin.tenant_header, &admin.key.tenant_id) {
        (Some(t), _, _) => Some(admin.tenant(t.as_ref())?),
        // X-Tenant-Id, or the key's own tenant: a tenant-bound admin key only ever verifies keys
        // of its tenant.
        (None, Some(h), _) => Some(h.clone()),
        (None, None, Some(bound)) => Some(bound.clone()),
        (None, None, None) => None,
    };
    let required = scope::parse_scopes(&req.scopes)?;
    let ip = req
        .ip
        .as_ref()
        .map(|s| s.as_ref().trim().parse::<IpAddr>())
        .transpose()
        .map_err(|_| ApiError::bad_request("invalid_ip", "ip is not an IPv4 or IPv6 address"))?;
    let now = state.clock.now();
    let needs = Needs {
        tenant: tenant.as_ref(),
        environment: req.environment,
        scopes: &required,
        ip,
    };
    let Evaluation {
        key: cached, code, ..
    } = admission::evaluate(state, req.key.expose_secret(), &needs, now).await?;
    // Nothing about another tenant's key (not even that it is revoked or expired) is revealed
    // to a tenant-bound caller.
    let foreign = cached
        .as_ref()
        .zip(tenant.as_ref())
        .is_some_and(|(k, t)| k.found.key.tenant_id != *t);
    let code = if foreign && !admin.is_root() {
        DecisionCode::NotFound
    } else {
        code
    };
    if req.tenant.is_some() {
        // The tenant asked about is the one the request acted on (moved: no copy).
        facts.tenant = tenant;
    }
    note_facts(facts, cached.as_ref(), code);
    match valid {
        Some(c) if code == DecisionCode::Valid => {
            c.inc();
        }
        _ => {
            state
                .metrics
                .verify_decisions
                .get_or_create(&CodeLabel {
                    code: code.as_str(),
                })
                .inc();
        }
    }
    // A key of another tenant than the one asked about is not attributed to that key.
    let known = cached
        .as_deref()
        .filter(|_| code != DecisionCode::TenantMismatch);
    admission::observe(state, now, known, code, ip);
    Ok(answer(state, cached, code, &required, now))
}

/// The request's audit facts: the decision code, and the key when the caller may learn about it.
fn note_facts(f: &mut Facts, cached: Option<&Arc<CachedKey>>, code: DecisionCode) {
    f.verify_code = Some(code.as_str());
    if let (Some(k), false) = (
        cached,
        matches!(code, DecisionCode::NotFound | DecisionCode::TenantMismatch),
    ) {
        f.key = Some(Arc::clone(k));
        if f.tenant.is_none() {
            f.tenant = Some(k.found.key.tenant_id.clone());
        }
    }
}

/// The answer for `code` about `cached` (bare for an unknown key or one the caller may not see);
/// a valid key's use is recorded.
fn answer(
    state: &AppState,
    cached: Option<Arc<CachedKey>>,
    code: DecisionCode,
    required: &[Scope],
    now: OffsetDateTime,
) -> VerifyResponse {
    match (&cached, code) {
        (_, DecisionCode::NotFound | DecisionCode::TenantMismatch) | (None, _) => {
            VerifyResponse::bare(code)
        }
        (Some(k), code) => {
            let key = &k.found.key;
            if code.is_valid() {
                admission::touch(state, &k.used, &key.id, now);
            }
            if !code.is_valid() {
                tracing::info!(key_id = %key.id, tenant = %key.tenant_id, code = code.as_str(), "verify: key refused");
            }
            VerifyResponse {
                code,
                key: Some(k.clone()),
                // A VALID answer has none missing: no second pass over the scopes on that path.
                missing_scopes: if !code.is_valid() {
                    scope::missing(&key.scopes, required)
                        .into_iter()
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_borrows_plain_text_and_unescapes_the_rest() {
        let body =
            br#"{"key":"sk","tenant":"acme","scopes":["a:read","b\u003aread"],"ip":"192.0.2.1"}"#;
        let req: VerifyRequest<'_> = serde_json::from_slice(body).expect("question");
        let borrowed = |t: &Text<'_>| matches!(t.0, Cow::Borrowed(_));
        assert!(req.tenant.as_ref().is_some_and(borrowed));
        assert!(req.ip.as_ref().is_some_and(borrowed));
        assert!(borrowed(&req.scopes[0]));
        assert!(!borrowed(&req.scopes[1]));
        assert_eq!(req.scopes[1].as_ref(), "b:read");
        assert_eq!(req.tenant.map(|t| t.0), Some(Cow::Borrowed("acme")));
    }
}
