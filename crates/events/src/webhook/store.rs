//! The contract of webhook storage: endpoints (with their secrets), deliveries and the fan-out
//! cursor. The embedded implementation is `portcullis_sqlite::webhooks::SqliteWebhookStore`
//! (tables in the events database); it serves whichever event backend the events come from.
//!
//! Every query of a tenant's objects names the tenant: an id of another tenant's endpoint or
//! delivery is not found.
use async_trait::async_trait;
use portcullis_core::{SecretString, tenant::TenantId};
use time::OffsetDateTime;

use super::{Delivery, DeliveryStatus, Endpoint};
use crate::model::{Event, TypeSet};

/// A webhook store failed or refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No such endpoint or delivery (for this tenant).
    #[error("not found")]
    NotFound,
    /// The tenant has its maximum number of endpoints.
    #[error("the tenant has the maximum number of webhook endpoints")]
    TooManyEndpoints,
    /// A redelivery of a delivery that is still pending.
    #[error("the delivery is still pending")]
    DeliveryPending,
    /// The storage failed; the text is for logs, never for clients.
    #[error("webhook store: {0}")]
    Backend(String),
}

/// A change of an endpoint (absent fields are left as they are).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub types: Option<TypeSet>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

impl EndpointChange {
    /// Applies the change to `e` at `now`.
    pub fn apply(&self, e: &mut Endpoint, now: OffsetDateTime) {
        if let Some(u) = &self.url {
            e.url.clone_from(u);
        }
        if let Some(t) = self.types {
            e.types = t;
        }
        if let Some(d) = &self.description {
            e.description.clone_from(d);
        }
        if let Some(en) = self.enabled {
            e.enabled = en;
        }
        e.updated_at = now;
    }
}

/// A delivery claimed for one attempt: everything the sender needs, and the claim that makes
/// its result count (a delivery claimed again after its lease ran out ignores the older
/// attempt's result).
#[derive(Debug)]
pub struct Attempt {
    pub delivery_id: String,
    pub endpoint_id: String,
    pub tenant: TenantId,
    pub event_id: u64,
    pub event_type: String,
    /// The exact body to send (the event's JSON, fixed at fan-out).
    pub body: String,
    pub url: String,
    /// The current secret, then the previous one while its overlap lasts.
    pub secrets: Vec<SecretString>,
    /// Attempts finished before this one.
    pub attempts: u32,
    /// The start of the retry window (the first attempt, or the last redelivery).
    pub retry_from: OffsetDateTime,
    pub claim: u64,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryAt(OffsetDateTime),
    Dead,
}

/// The result of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// When the attempt ended.
    pub at: OffsetDateTime,
    pub status_code: Option<u16>,
    /// A short class of failure (`timeout`, `connect`, `status 500`), never a body or a
    /// secret.
    pub error: Option<String>,
    pub next: Next,
}

/// A rewrite of stored secrets: (tenant, endpoint id, stored value) → the new stored value.
pub type SecretRewrite<'a> = dyn Fn(&TenantId, &str, &str) -> Option<String> + Send + Sync + 'a;

/// Endpoints, deliveries and the fan-out cursor.
#[async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug {
    /// Stores a new endpoint with its secret, unless its tenant already has `max_per_tenant`.
    async fn create_endpoint(
        &self,
        endpoint: &Endpoint,
        secret: &SecretString,
        max_per_tenant: u32,
    ) -> Result<(), WebhookError>;

    /// A tenant's endpoints with an id after `after`, oldest first, at most `limit`.
    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, WebhookError>;

    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<Endpoint>, WebhookError>;

    /// Changes an endpoint; returns it before and after.
    async fn update_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
        change: &EndpointChange,
        now: OffsetDateTime,
    ) -> Result<(Endpoint, Endpoint), WebhookError>;

    /// Removes an endpoint and its deliveries; returns what it was.
    async fn delete_endpoint(&self, tenant: &TenantId, id: &str) -> Result<Endpoint, WebhookError>;

    /// Replaces the secret; the current one keeps signing until `previous_expires_at` (a
    /// previous secret from an earlier roll is dropped).
    async fn roll_secret(
        &self,
        tenant: &TenantId,
        id: &str,
        secret: &SecretString,
        previous_expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Endpoint, WebhookError>;

    /// The id of the last event fanned out.
    async fn cursor(&self) -> Result<u64, WebhookError>;

    /// In one transaction: one pending delivery, due at `now`, per event of `events` and
    /// enabled endpoint that [wants](Endpoint::wants) it (once per endpoint and event, however
    /// often called), and the cursor moved to `through`. Returns how many were created.
    async fn fan_out(
        &self,
        events: &[Event],
        through: u64,
        now: OffsetDateTime,
    ) -> Result<u64, WebhookError>;

    /// Claims at most `limit` pending deliveries of enabled endpoints due at `now`, oldest due
    /// first: they are not due again before `lease_until` (when an attempt that never
    /// finished, e.g. in a crash, is made again).
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Attempt>, WebhookError>;

    /// Records an attempt's result; `false` when the claim was overtaken (nothing changed).
    async fn finish(&self, attempt: &Attempt, result: &AttemptResult)
    -> Result<bool, WebhookError>;

    /// A tenant endpoint's deliveries, optionally of one status, with an id after `after`,
    /// oldest first, at most `limit`; `NotFound` when the endpoint is not the tenant's.
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>, WebhookError>;

    /// Makes a dead (or delivered) delivery pending again, due at `now`, with a new retry
    /// window from `now`; `DeliveryPending` when it still is.
    async fn redeliver(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        delivery_id: &str,
        now: OffsetDateTime,
    ) -> Result<Delivery, WebhookError>;

    /// Removes delivered and dead deliveries last changed before `before`; returns how many.
    async fn purge(&self, before: OffsetDateTime) -> Result<u64, WebhookError>;

    /// Passes every stored secret (current and previous) of every endpoint to `f` with the
    /// endpoint's tenant and id; where `f` answers `Some`, the stored value is replaced by it.
    /// One transaction; returns how many values changed. For changes of the stored form
    /// (sealing plaintext secrets).
    async fn rewrite_secrets(&self, f: &SecretRewrite<'_>) -> Result<u64, WebhookError>;
}
