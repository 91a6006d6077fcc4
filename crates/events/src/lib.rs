//! portcullis events: what happens to keys, told as it happens and never missed.
//!
//! - [`model`]: the event ([`Event`]), its types ([`EventType`], [`TypeSet`]) and what readers
//!   may see ([`Scope`]).
//! - [`backend`]: the [`EventBackend`] trait every backend implements (the embedded SQLite one
//!   in `portcullis-sqlite`, NATS JetStream): durable, ordered ids, duplicates dropped by
//!   message id, replay after an id, a live feed.
#![forbid(unsafe_code)]

pub mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod model;

pub use backend::{EventBackend, EventError};
pub use model::{Event, EventType, NewEvent, Scope, TypeSet};
