//! The audit log in the API: the record of every API request ([`request`]) and the audit API
//! ([`api`]), on the service's audit log ([`portcullis_service::audit`]).
//!
//! - [`request`]: the API's audit middleware (one record per admin / verify API request) and the
//!   `fail_closed` gate in front of the API.
//! - [`api`]: `GET /v1/tenants/{tenant}/audit`.
pub use portcullis_service::audit::*;

pub mod api;
pub mod request;
