//! Webhooks at the HTTP edge: the API under `/v1/tenants/{tenant}/webhooks` ([`api`]) and its
//! URL rules ([`url`]); the delivery worker is the service's
//! ([`portcullis_service::events::webhooks`]). Signatures, the retry schedule and the store contract are in
//! `portcullis_events::webhook`; the store is `portcullis_sqlite::SqliteWebhookStore`.
//!
//! Endpoint secrets are sealed at rest ([`sealed`]); deliveries reach public addresses only
//! ([`guard`]) unless `danger_allow_private_webhook_targets`.
//!
//! Webhook state (endpoints with their secrets, deliveries, the fan-out cursor) lives in the
//! events database, `{data_dir}/events.sqlite3` (or `[events] database`), whichever backend
//! keeps the events: with NATS JetStream it is still this node's SQLite file, so deliver
//! from one node (`events.webhooks.enabled = false` on the others).
pub use portcullis_service::events::webhooks::*;

pub mod api;
pub mod url;

/// The route templates (for the router and the metrics' route labels).
pub const WEBHOOKS: &str = "/v1/tenants/{tenant}/webhooks";
pub const WEBHOOK: &str = "/v1/tenants/{tenant}/webhooks/{webhook_id}";
pub const WEBHOOK_ROLL: &str = "/v1/tenants/{tenant}/webhooks/{webhook_id}/roll-secret";
pub const DELIVERIES: &str = "/v1/tenants/{tenant}/webhooks/{webhook_id}/deliveries";
pub const REDELIVER: &str =
    "/v1/tenants/{tenant}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver";
/// Every webhook route template.
pub const ROUTES: [&str; 5] = [WEBHOOKS, WEBHOOK, WEBHOOK_ROLL, DELIVERIES, REDELIVER];

/// The webhook routes, to merge into the API router (before its route layers).
pub fn routes() -> axum::Router<crate::AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(WEBHOOKS, post(api::create).get(api::list))
        .route(
            WEBHOOK,
            get(api::get).patch(api::update).delete(api::delete),
        )
        .route(WEBHOOK_ROLL, post(api::roll_secret))
        .route(DELIVERIES, get(api::deliveries))
        .route(REDELIVER, post(api::redeliver))
}
