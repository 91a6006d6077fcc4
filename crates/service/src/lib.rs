//! portcullis-service: everything the API and the gateway do that is not HTTP, on storage traits
//! whose backends the binary chooses.
//!
//! - [`admission`]: a presented secret resolved through the cache and the store.
//! - [`config`]: the configuration (one TOML file + `PORTCULLIS_*` overrides), checked.
//! - [`state`]: the shared state of one server ([`AppState`]).
//! - [`ops`]: the operations on tenants, keys and admin keys (audited, publishing events),
//!   shared by the API and the operator CLI, failing with [`ops::OpError`].
//! - [`cache`] and [`changes`]: the credential cache, invalidated by the store's change feed.
//! - [`usage`]: last-used times, batched off the request path.
//! - [`audit`]: the audit log queue and writer, retention and signing keys.
//! - [`events`]: publishing events, anomaly detection, key expiry, webhook delivery, SSE caps.
//! - [`metrics`]: every Prometheus handle, registered once.
//! - [`request_id`]: the id of the request being handled.
//! - [`tasks`]: the background tasks of a server, started from its state.
#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod cache;
pub mod changes;
pub mod config;
pub mod events;
pub mod metrics;
pub mod ops;
pub mod request_id;
pub mod state;
pub mod tasks;
pub mod usage;

pub use config::Config;
pub use state::AppState;
