//! The audit log in the API: `GET /v1/tenants/{tenant}/audit` ([`api`]), on the service's
//! audit log ([`portcullis_service::audit`]). The record of every API request is
//! [`crate::record`].
pub use portcullis_service::audit::*;

pub mod api;
