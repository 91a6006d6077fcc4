//! portcullis-api: the admin and verify API (axum): routes by concept, the admin-key extractor,
//! the audit record of every API request, the SSE event stream and the webhook API, on the
//! service layer ([`portcullis_service`]) and the HTTP edge ([`portcullis_http`]).
#![forbid(unsafe_code)]

pub mod admin_keys;
pub mod app;
pub mod audit;
pub mod auth;
pub mod body;
pub mod events;
pub mod extract;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod no_store;
pub mod page;
pub mod record;
pub mod routes;
pub mod tenants;
pub mod verify;

pub use portcullis_http::{error, listen, request_id};
pub use portcullis_service::{Config, cache, changes, config, ops, state, usage};
pub use state::AppState;
