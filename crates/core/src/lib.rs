//! portcullis-core: everything about keys, tenants and access decisions that needs no I/O.
//!
//! - [`key`]: the key format (`{prefix}_{32 random base62}{6 base62 CRC32}`), generation and parsing.
//! - [`key_scan`]: finding keys inside URLs, however encoded.
//! - [`hash`]: the server pepper and the keyed hash (HMAC-SHA256) that is the only form a key is stored in.
//! - [`tenant`], [`scope`], [`ip`]: validated building blocks of a key record.
//! - [`ratelimit`]: the rate limit of a key or a tenant.
//! - [`ceiling`]: the bounds a root admin sets on what a tenant's keys may be given.
//! - [`decision`]: the pure access decision (key record, request facts, now) → code.
//! - [`outbound`]: which hosts and addresses a webhook delivery may reach (public unicast only).
//! - [`seal`]: secrets the server reads back, sealed at rest (AES-256-GCM, key from the pepper).
//! - [`request`]: validation of create / update input shared by the HTTP API and the CLI.
#![forbid(unsafe_code)]

pub mod ceiling;
pub mod clock;
pub mod decision;
pub mod error;
pub mod hash;
pub mod ids;
pub mod ip;
pub mod key;
pub mod key_scan;
pub mod limits;
pub mod metadata;
pub mod model;
pub mod outbound;
pub mod ratelimit;
pub mod request;
pub mod scope;
pub mod seal;
pub mod tenant;

pub use secrecy::{ExposeSecret, SecretString};
pub use time::OffsetDateTime;
