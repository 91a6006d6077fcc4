//! portcullis events: what happens to keys, told as it happens and never missed.
//!
//! - [`model`]: the event ([`Event`]), its types ([`EventType`], [`TypeSet`]) and what readers
//!   may see ([`Scope`]).
//! - [`backend`]: the [`EventBackend`] trait every backend implements (the embedded SQLite one
//!   in `portcullis-sqlite`, NATS JetStream): durable, ordered ids, duplicates dropped by
//!   message id, replay after an id, a live feed.
//! - [`anomaly`]: the anomaly detector (rate spikes, new IPs, failure bursts, revoked keys in
//!   use, rate-limited requests per window): in memory, fed by the request path, one event per
//!   episode.
//! - [`nats`]: the NATS JetStream backend ([`nats::NatsBackend`]): one stream shared by every
//!   node, ids are stream sequences, `Nats-Msg-Id` dedup, a live feed fed from the stream.
//! - [`webhook`]: webhook signatures (`Portcullis-Signature`), the retry schedule and the
//!   [`webhook::WebhookStore`] contract.
#![forbid(unsafe_code)]

pub mod anomaly;
pub mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod model;
pub mod nats;
pub mod webhook;

pub use backend::{EventBackend, EventError};
pub use model::{Event, EventType, NewEvent, Scope, TypeSet};
