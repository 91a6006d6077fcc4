//! `POST /v1/verify`: for services that check keys themselves. Needs an admin key with
//! `keys:verify`. Answers 200 with a decision code for every well-formed question: the precise
//! reason a key fails is for authorised callers only.
use std::net::IpAddr;

use axum::{Json, extract::State};
use portcullis_core::{
    ExposeSecret, OffsetDateTime, SecretString,
    decision::DecisionCode,
    scope::{self, Scope},
    tenant::{Environment, TenantId},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use portcullis_service::admission::{self, Evaluation, Needs};

use portcullis_service::metrics::CodeLabel;

use crate::{auth::Admin, body::JsonBody, error::ApiError, state::AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Held in a redacting, zeroizing type like every secret.
    pub key: SecretString,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub environment: Option<Environment>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub ip: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct VerifyResponse {
    pub valid: bool,
    pub code: DecisionCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_scopes: Vec<Scope>,
}

impl VerifyResponse {
    fn bare(code: DecisionCode) -> Self {
        Self {
            valid: false,
            code,
            key_id: None,
            tenant: None,
            environment: None,
            name: None,
            scopes: None,
            expires_at: None,
            external_id: None,
            metadata: None,
            missing_scopes: Vec::new(),
        }
    }
}

pub async fn verify(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(req): JsonBody<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    admin.require("keys:verify")?;
    let tenant = match (&req.tenant, &admin.tenant_header, &admin.key.tenant_id) {
        (Some(t), _, _) => Some(admin.tenant(t)?),
        // X-Tenant-Id, or the key's own tenant: a tenant-bound admin key only ever verifies keys
        // of its tenant.
        (None, Some(h), _) => Some(h.clone()),
        (None, None, Some(bound)) => Some(bound.clone()),
        (None, None, None) => None,
    };
    let required = scope::parse_scopes(&req.scopes)?;
    let ip = req
        .ip
        .as_deref()
        .map(|s| s.trim().parse::<IpAddr>())
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
    } = admission::evaluate(&state, req.key.expose_secret(), &needs, now).await?;
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
    if let Some(slot) = &admin.audit {
        slot.with(|f| {
            f.data.insert("verify_code".into(), code.as_str().into());
            if let (Some(k), false) = (
                &cached,
                matches!(code, DecisionCode::NotFound | DecisionCode::TenantMismatch),
            ) {
                f.key_id = Some(k.found.key.id.clone());
                if f.tenant.is_none() {
                    f.tenant = Some(k.found.key.tenant_id.clone());
                }
            }
        });
    }
    state
        .metrics
        .verify_decisions
        .get_or_create(&CodeLabel {
            code: code.as_str(),
        })
        .inc();
    // A key of another tenant than the one asked about is not attributed to that key.
    let known = cached
        .as_deref()
        .filter(|_| code != DecisionCode::TenantMismatch);
    admission::observe(&state, now, known, code, ip);
    let answer = match (&cached, code) {
        (_, DecisionCode::NotFound | DecisionCode::TenantMismatch) | (None, _) => {
            VerifyResponse::bare(code)
        }
        (Some(k), code) => {
            let key = &k.found.key;
            if code.is_valid() {
                admission::touch(&state, &k.used, &key.id, now);
            }
            if !code.is_valid() {
                tracing::info!(key_id = %key.id, tenant = %key.tenant_id, code = code.as_str(), "verify: key refused");
            }
            VerifyResponse {
                valid: code.is_valid(),
                code,
                key_id: Some(key.id.clone()),
                tenant: Some(key.tenant_id.clone()),
                environment: Some(key.environment),
                name: Some(key.name.clone()),
                scopes: Some(key.scopes.clone()),
                expires_at: key.expires_at,
                external_id: key.external_id.clone(),
                metadata: Some(key.metadata.clone()),
                // A VALID answer has none missing: no second pass over the scopes on that path.
                missing_scopes: if !code.is_valid() {
                    scope::missing(&key.scopes, &required)
                        .into_iter()
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                },
            }
        }
    };
    Ok(Json(answer))
}
