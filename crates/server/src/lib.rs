//! portcullis-server: one server assembled from its parts: the admin / verify API
//! ([`portcullis_api`]) and the gateway ([`portcullis_gateway`]) on their listeners
//! ([`portcullis_http::listen`]), with the service's background tasks ([`portcullis_service`]),
//! until shutdown ([`serve`]). It opens no backend: the binary does, and hands them in.
#![forbid(unsafe_code)]

pub mod logging;
pub mod serve;

pub use portcullis_api::{
    admin_keys, app, audit, auth, body, events, extract, health, keys, metrics, no_store, page,
    tenants, verify,
};
pub use portcullis_gateway as gateway;
pub use portcullis_http::{error, listen, request_id, tls};
pub use portcullis_service::{Config, cache, changes, config, ops, state, usage};
pub use state::AppState;
