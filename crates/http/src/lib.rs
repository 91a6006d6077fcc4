//! portcullis-http: the HTTP edge shared by the admin / verify API and the gateway.
//!
//! - [`listen`]: the HTTP/1.1 listeners with their timeouts and connection caps.
//! - [`request_id`]: the id of every request, and the refusal of keys sent in URLs ([`edge`]).
//! - [`error`]: [`error::ApiError`], the one error answer (a status, a stable code, a generic
//!   message), and the mapping of service failures to it.
//! - [`credential`]: reading the credential and `X-Tenant-Id` from the headers.
//! - [`header_value`]: header values formatted on the stack, one allocation each.
//! - [`client`]: the client's address behind trusted proxies, and the listener's scheme.
#![forbid(unsafe_code)]

pub mod client;
pub mod codes;
pub mod credential;
pub mod edge;
pub mod error;
pub mod header_value;
pub mod listen;
pub mod request_id;
pub mod tls;
