//! The tamper-evident audit log: what a record is, how records are chained and sealed, how the
//! chain head is signed at checkpoints, and how a stored log is verified.
//!
//! - Every tenant has its own chain (records without a tenant go to [`SYSTEM_CHAIN`]), so a
//!   tenant's retention can cut its own chain without touching the others.
//! - A record is sealed into an [`Entry`]: sequence number (from 1, no gaps), the SHA-256 of the
//!   previous entry, and its own SHA-256 over chain, sequence, previous hash and the exact bytes
//!   of the record's body ([`body`]: a compact binary form; logs written before it hold JSON),
//!   which is what is stored (never written again to be checked).
//! - A [`Checkpoint`] signs a chain head (chain, sequence, hash, time) with Ed25519. A
//!   retention checkpoint marks where a purged chain now starts.
//! - The signing keys form a chain of their own ([`keys::KeyChain`]): the first (root) key, then
//!   hand-overs each signed by the key before, so a verifier that trusts the root trusts them all.
//! - [`verify::ChainVerifier`] walks a chain in order and names the first broken point.
//!
//! Storage lives behind [`store::AuditStore`]; the embedded backend is in `portcullis-sqlite`.
#![forbid(unsafe_code)]

pub mod body;
pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod keys;
pub mod record;
pub mod retention;
pub mod store;
pub mod verify;
pub mod walk;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use chain::{Chainer, Head};
pub use checkpoint::{Checkpoint, CheckpointKind, CheckpointSigner, SignerError};
pub use ed25519_dalek::VerifyingKey;
pub use keys::{KEY_CHAIN, KeyChain, KeyLink, TrustedKey, TrustedKeys, fingerprint};
pub use record::{
    Body, Columns, Decision, Details, Digest, Entry, Kind, Record, SYSTEM_CHAIN, Sealable,
};
pub use store::{AuditFilter, AuditStore, AuditStoreError};
pub use verify::{Break, ChainReport, ChainVerifier, Problem};
pub use walk::{verify_chain, verify_store};
