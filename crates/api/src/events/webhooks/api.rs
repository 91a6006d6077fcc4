//! `/v1/tenants/{tenant}/webhooks`: endpoints (create with the secret shown once, list, read,
//! change, delete, roll the secret) and their deliveries (list, redeliver). Admin scopes
//! `webhooks:read` / `webhooks:write`; a tenant-bound admin key reaches its own tenant only.
//! Every change is an audit record (kind `change`, `webhook.*`) without the secret, with the
//! URL's query left out.
use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use portcullis_core::{ExposeSecret, OffsetDateTime, ids, tenant::TenantId};
use portcullis_events::{
    TypeSet,
    webhook::{
        DELIVERY_ID_KIND, Delivery, DeliveryStatus, ENDPOINT_ID_KIND, Endpoint, EndpointChange,
        WebhookError, WebhookStore, generate_secret,
    },
};
use portcullis_store::Page;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::{config::MAX_SECRET_OVERLAP_SECONDS, sender::redacted_url, url::check_url};
use crate::{
    audit::{Kind, Record},
    auth::Admin,
    body::{JsonBody, OptionalJson},
    error::ApiError,
    extract::{Path, Query},
    no_store::SecretJson,
    ops,
    page::{self, PageBody},
    state::AppState,
};

/// The longest description, in bytes (the longest URL is [`super::url::MAX_URL_LEN`]).
pub const MAX_DESCRIPTION_LEN: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub url: String,
    /// Event type names; all types when absent.
    #[serde(default)]
    pub types: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A present field, even `null` (`Some(None)`): tells "clear it" from "leave it".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollSecret {
    /// How long the current secret keeps signing beside the new one (0 to 604800 seconds;
    /// default `events.webhooks.secret_overlap_seconds`, 24 h).
    #[serde(default)]
    pub overlap_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// The answer to a create or a roll: the only time the secret is shown.
#[derive(Debug, Serialize)]
pub struct WithSecret {
    pub webhook: Endpoint,
    pub secret: String,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
}

fn store(state: &AppState) -> Result<&Arc<dyn WebhookStore>, ApiError> {
    // Without events there are no webhooks: the routes look absent, like the event stream.
    state.events.webhooks().ok_or_else(ApiError::not_found)
}

fn settings(state: &AppState) -> super::WebhooksConfig {
    state
        .events
        .config()
        .map(|c| c.webhooks.clone())
        .unwrap_or_default()
}

fn webhook_id(id: &str) -> Result<&str, ApiError> {
    if ids::is_id(ENDPOINT_ID_KIND, id) {
        Ok(id)
    } else {
        Err(ApiError::not_found())
    }
}

fn failed(e: WebhookError) -> ApiError {
    match e {
        WebhookError::NotFound => ApiError::not_found(),
        WebhookError::TooManyEndpoints => ApiError::new(
            StatusCode::CONFLICT,
            "too_many_webhooks",
            "the tenant has the maximum number of webhook endpoints",
        ),
        WebhookError::DeliveryPending => ApiError::new(
            StatusCode::CONFLICT,
            "delivery_pending",
            "the delivery is still pending; only a dead or delivered one is redelivered",
        ),
        other => ApiError::internal(other),
    }
}

fn check_description(d: &str) -> Result<(), ApiError> {
    if d.is_empty() || d.len() > MAX_DESCRIPTION_LEN || d.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_description",
            "description must be 1 to 256 bytes without control characters",
        ));
    }
    Ok(())
}

fn parse_types(names: &[String]) -> Result<TypeSet, ApiError> {
    TypeSet::from_names(names).map_err(|_| {
        ApiError::bad_request(
            "invalid_event_types",
            "types must be 1 to 32 known event type names",
        )
    })
}

/// The endpoint as audit records show it: the URL without its query.
fn audited(e: &Endpoint) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("url".into(), Value::String(redacted_url(&e.url)));
    }
    v
}

/// Records a change by `admin` (kind `change`, the tenant's chain).
fn changed(
    state: &AppState,
    admin: &Admin,
    action: &str,
    tenant: &TenantId,
    target: Value,
    before: Option<Value>,
    after: Value,
) {
    let mut r = Record::new(state.clock.now(), Kind::Change, action);
    r.tenant = Some(tenant.as_str().to_owned());
    r.actor = Some(admin.key.id.clone());
    r.request_id = crate::request_id::current();
    r.decision = Some(portcullis_audit::Decision::Allow);
    r.data.insert("target".into(), target);
    if let Some(b) = before {
        r.data.insert("before".into(), b);
    }
    r.data.insert("after".into(), after);
    state.audit.record(r);
}

pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> Result<SecretJson<WithSecret>, ApiError> {
    admin.require("webhooks:write")?;
    let tenant = admin.tenant(&tenant)?;
    let store = store(&state)?;
    let c = settings(&state);
    check_url(&body.url, (&c).into())?;
    let types = body
        .types
        .as_deref()
        .map(parse_types)
        .transpose()?
        .unwrap_or_else(TypeSet::all);
    if let Some(d) = &body.description {
        check_description(d)?;
    }
    ops::load_tenant(state.store.as_ref(), &tenant).await?;
    let now = state.clock.now();
    let endpoint = Endpoint {
        id: ids::new_id(ENDPOINT_ID_KIND),
        tenant: tenant.clone(),
        url: body.url,
        description: body.description,
        types,
        enabled: body.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
        previous_secret_expires_at: None,
    };
    let secret = generate_secret();
    store
        .create_endpoint(&endpoint, &secret, c.max_endpoints_per_tenant)
        .await
        .map_err(failed)?;
    changed(
        &state,
        &admin,
        "webhook.create",
        &tenant,
        serde_json::json!({"tenant": tenant, "webhook_id": endpoint.id}),
        None,
        audited(&endpoint),
    );
    tracing::info!(tenant = %tenant, webhook_id = %endpoint.id, admin_key = %admin.key.id, "webhook created");
    Ok(SecretJson(
        StatusCode::CREATED,
        WithSecret {
            webhook: endpoint,
            secret: secret.expose_secret().to_owned(),
            previous_secret_expires_at: None,
        },
    ))
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Path(tenant): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<PageBody<Endpoint>>, ApiError> {
    admin.require("webhooks:read")?;
    let tenant = admin.tenant(&tenant)?;
    let store = store(&state)?;
    let req = page::request(ENDPOINT_ID_KIND, q.cursor, q.limit)?;
    ops::load_tenant(state.store.as_ref(), &tenant).await?;
    let data = store
        .list_endpoints(&tenant, req.after.as_deref(), req.limit + 1)
        .await
        .map_err(failed)?;
    Ok(Json(Page::cut(data, req.limit, |e| e.id.clone()).into()))
}

pub async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<Endpoint>, ApiError> {
    admin.require("webhooks:read")?;
    let tenant = admin.tenant(&tenant)?;
    store(&state)?
        .get_endpoint(&tenant, webhook_id(&id)?)
        .await
        .map_err(failed)?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateWebhook>,
) -> Result<Json<Endpoint>, ApiError> {
    admin.require("webhooks:write")?;
    let tenant = admin.tenant(&tenant)?;
    let store = store(&state)?;
    let id = webhook_id(&id)?;
    if let Some(u) = &body.url {
        check_url(u, (&settings(&state)).into())?;
    }
    if let Some(Some(d)) = &body.description {
        check_description(d)?;
    }
    let change = EndpointChange {
        url: body.url,
        types: body.types.as_deref().map(parse_types).transpose()?,
        description: body.description,
        enabled: body.enabled,
    };
    let (before, after) = store
        .update_endpoint(&tenant, id, &change, state.clock.now())
        .await
        .map_err(failed)?;
    changed(
        &state,
        &admin,
        "webhook.update",
        &tenant,
        serde_json::json!({"tenant": tenant, "webhook_id": id}),
        Some(audited(&before)),
        audited(&after),
    );
    tracing::info!(tenant = %tenant, webhook_id = %id, admin_key = %admin.key.id, "webhook updated");
    Ok(Json(after))
}

pub async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin.require("webhooks:write")?;
    let tenant = admin.tenant(&tenant)?;
    let id = webhook_id(&id)?;
    let gone = store(&state)?
        .delete_endpoint(&tenant, id)
        .await
        .map_err(failed)?;
    changed(
        &state,
        &admin,
        "webhook.delete",
        &tenant,
        serde_json::json!({"tenant": tenant, "webhook_id": id}),
        Some(audited(&gone)),
        Value::Null,
    );
    tracing::info!(tenant = %tenant, webhook_id = %id, admin_key = %admin.key.id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn roll_secret(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RollSecret>,
) -> Result<SecretJson<WithSecret>, ApiError> {
    admin.require("webhooks:write")?;
    let tenant = admin.tenant(&tenant)?;
    let store = store(&state)?;
    let id = webhook_id(&id)?;
    let overlap = body
        .overlap_seconds
        .unwrap_or(settings(&state).secret_overlap_seconds);
    if overlap > MAX_SECRET_OVERLAP_SECONDS {
        return Err(ApiError::bad_request(
            "invalid_overlap",
            "overlap_seconds must be between 0 and 604800",
        ));
    }
    let now = state.clock.now();
    let until = now + time::Duration::seconds(i64::try_from(overlap).unwrap_or(i64::MAX));
    let secret = generate_secret();
    let endpoint = store
        .roll_secret(&tenant, id, &secret, until, now)
        .await
        .map_err(failed)?;
    changed(
        &state,
        &admin,
        "webhook.roll_secret",
        &tenant,
        serde_json::json!({"tenant": tenant, "webhook_id": id}),
        None,
        audited(&endpoint),
    );
    tracing::info!(tenant = %tenant, webhook_id = %id, admin_key = %admin.key.id, "webhook secret rolled");
    Ok(SecretJson(
        StatusCode::OK,
        WithSecret {
            webhook: endpoint,
            secret: secret.expose_secret().to_owned(),
            previous_secret_expires_at: Some(until),
        },
    ))
}

pub async fn deliveries(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id)): Path<(String, String)>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<PageBody<Delivery>>, ApiError> {
    admin.require("webhooks:read")?;
    let tenant = admin.tenant(&tenant)?;
    let store = store(&state)?;
    let id = webhook_id(&id)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            DeliveryStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request("invalid_query", "status must be pending, delivered or dead")
            })
        })
        .transpose()?;
    let req = page::request(DELIVERY_ID_KIND, q.cursor, q.limit)?;
    let data = store
        .list_deliveries(&tenant, id, status, req.after.as_deref(), req.limit + 1)
        .await
        .map_err(failed)?;
    Ok(Json(Page::cut(data, req.limit, |d| d.id.clone()).into()))
}

pub async fn redeliver(
    State(state): State<AppState>,
    admin: Admin,
    Path((tenant, id, delivery_id)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    admin.require("webhooks:write")?;
    let tenant = admin.tenant(&tenant)?;
    let store = store(&state)?;
    let id = webhook_id(&id)?;
    if !ids::is_id(DELIVERY_ID_KIND, &delivery_id) {
        return Err(ApiError::not_found());
    }
    let d = store
        .redeliver(&tenant, id, &delivery_id, state.clock.now())
        .await
        .map_err(failed)?;
    changed(
        &state,
        &admin,
        "webhook.redeliver",
        &tenant,
        serde_json::json!({"tenant": tenant, "webhook_id": id, "delivery_id": d.id}),
        None,
        serde_json::to_value(&d).unwrap_or(Value::Null),
    );
    tracing::info!(tenant = %tenant, webhook_id = %id, delivery_id = %d.id, admin_key = %admin.key.id, "webhook redelivery requested");
    Ok((StatusCode::ACCEPTED, Json(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_and_types_are_checked() {
        assert!(check_description("billing alerts").is_ok());
        assert!(check_description("").is_err());
        assert!(check_description("a\u{7}b").is_err());
        assert!(check_description(&"x".repeat(257)).is_err());
        assert!(parse_types(&["key.created".into()]).is_ok());
        assert_eq!(
            parse_types(&[]).err().map(|e| e.code),
            Some("invalid_event_types")
        );
        assert_eq!(
            parse_types(&["key.nope".into()]).err().map(|e| e.code),
            Some("invalid_event_types")
        );
    }

    #[test]
    fn a_null_description_clears_and_an_absent_one_stays() {
        let clear: UpdateWebhook = serde_json::from_str(r#"{"description": null}"#).unwrap();
        assert_eq!(clear.description, Some(None));
        let keep: UpdateWebhook = serde_json::from_str(r#"{"enabled": false}"#).unwrap();
        assert_eq!(keep.description, None);
        assert!(serde_json::from_str::<UpdateWebhook>(r#"{"secret": "x"}"#).is_err());
    }
}
