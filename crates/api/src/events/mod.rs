//! Events in the API: the SSE endpoint ([`sse`]) and the webhook API ([`webhooks`]), on the
//! service's [`Events`] handle ([`portcullis_service::events`]).
pub use portcullis_service::events::*;

pub mod sse;
pub mod webhooks;
