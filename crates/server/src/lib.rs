//! portcullis-server: the HTTP server (admin API, verify API, health, metrics).
#![forbid(unsafe_code)]

pub mod admin_keys;
pub mod app;
pub mod audit;
pub mod auth;
pub mod body;
pub mod datadir;
pub mod error;
pub mod events;
pub mod extract;
pub mod gateway;
pub mod health;
pub mod keys;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod no_store;
pub mod page;
pub mod request_id;
pub mod serve;
pub mod tenants;
pub mod verify;

pub use portcullis_service::{Config, cache, changes, config, ops, state, usage};
pub use state::AppState;
