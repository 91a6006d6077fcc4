//! Webhook delivery: the worker ([`worker`]) and its HTTP client ([`sender`]), the public-address
//! guard ([`guard`]) and endpoint secrets sealed at rest ([`sealed`]). Signatures, the retry
//! schedule and the store contract are in `portcullis_events::webhook`.
//!
//! Webhook state (endpoints with their secrets, deliveries, the fan-out cursor) lives in the
//! events database, `{data_dir}/events.sqlite3` (or `[events] database`), whichever backend
//! keeps the events: with NATS JetStream it is still this node's SQLite file, so deliver
//! from one node (`events.webhooks.enabled = false` on the others).
pub use crate::config::webhooks as config;
pub mod guard;
pub mod sealed;
pub mod sender;
pub mod worker;

pub use config::WebhooksConfig;
pub use worker::spawn;
