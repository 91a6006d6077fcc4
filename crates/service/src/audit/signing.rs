//! The audit signing key at start-up: the key file must be the key the log says signs it.
//!
//! The audit database keeps the chain of signing keys (`portcullis_audit::keys`): the first key,
//! then each hand-over made by `portcullis audit rotate-signing-key`. The key file in use must be
//! the last key of that chain. A key file that is missing or holds another key is refused, never
//! silently recreated or trusted: checkpoints signed by a new key would no longer verify against
//! the log's first key, and a replaced key is exactly what an attacker rewriting the log needs.
//! A log from before chains of keys has its first link added here, after its existing
//! checkpoints were checked to be signed by the key file's key.
use std::path::{Path, PathBuf};

use portcullis_audit::{AuditStore, CheckpointSigner, KeyChain, SignerError, fingerprint};
use time::OffsetDateTime;

/// The signing key cannot be used with this audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningKeyError {
    #[error(
        "the audit signing key file {key_file} is missing, but the audit log {database} is \
         signed by key {expected}. Restore that key file from your backup; a new key would not \
         be trusted by `portcullis audit verify`, so none is created. (To start a new log \
         instead, move {database} away.)"
    )]
    Missing {
        key_file: PathBuf,
        database: PathBuf,
        expected: String,
    },
    #[error(
        "the audit signing key file {key_file} holds key {found}, but the audit log {database} \
         is signed by key {expected}. Put back the key file holding {expected} (from your \
         backup); to change keys, run `portcullis audit rotate-signing-key` with that key in \
         place. Refusing to sign the log with a key it does not trust."
    )]
    Mismatch {
        key_file: PathBuf,
        database: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "the chain of audit signing keys in {database} is broken ({why}); run \
         `portcullis audit verify` and restore the audit database from a backup"
    )]
    BrokenChain { database: PathBuf, why: String },
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error(transparent)]
    Store(#[from] portcullis_audit::AuditStoreError),
}

/// Where the key and the log are, for the error messages.
#[derive(Debug, Clone, Copy)]
pub struct Paths<'a> {
    pub key_file: &'a Path,
    pub database: &'a Path,
}

/// Loads the signing key at `paths.key_file` and checks it against the chain of keys of
/// `store` (see the module documentation); creates the key file only for a log that has neither
/// a chain of keys nor a signed checkpoint. Returns the signer and the verified chain of keys.
pub async fn load_signer(
    store: &dyn AuditStore,
    paths: Paths<'_>,
) -> Result<(CheckpointSigner, KeyChain), SigningKeyError> {
    // Twice at most: when another process adds the first link at the same time, check again.
    for _ in 0..2 {
        let chain = load_chain(store, paths).await?;
        if let Some(current) = chain.current() {
            let signer = expect_key(paths, &fingerprint(current), |s| {
                s.verifying_key() == *current
            })?;
            return Ok((signer, chain));
        }
        let signers = legacy_signers(store).await?;
        let signer = match signers.first() {
            Some(id) => expect_key(paths, &format!("with id {id}"), |s| {
                signers.iter().any(|id| id == s.id())
            })?,
            None => CheckpointSigner::load_or_create(paths.key_file)?,
        };
        if store
            .add_signing_key(&signer.root_link(OffsetDateTime::now_utc()))
            .await?
        {
            tracing::info!(
                key = %fingerprint(&signer.verifying_key()),
                "recorded the first audit signing key"
            );
            let chain = KeyChain::single(signer.verifying_key());
            return Ok((signer, chain));
        }
    }
    let chain = load_chain(store, paths).await?;
    let expected = chain.current().map(fingerprint).unwrap_or_default();
    let signer = expect_key(paths, &expected, |s| {
        Some(&s.verifying_key()) == chain.current()
    })?;
    Ok((signer, chain))
}

/// The stored chain of keys, verified.
pub async fn load_chain(
    store: &dyn AuditStore,
    paths: Paths<'_>,
) -> Result<KeyChain, SigningKeyError> {
    KeyChain::load(store)
        .await?
        .map_err(|b| SigningKeyError::BrokenChain {
            database: paths.database.to_owned(),
            why: b.to_string(),
        })
}

/// Reads the key file, which must exist and pass `matches`.
fn expect_key(
    paths: Paths<'_>,
    expected: &str,
    matches: impl Fn(&CheckpointSigner) -> bool,
) -> Result<CheckpointSigner, SigningKeyError> {
    let Some(signer) = CheckpointSigner::load(paths.key_file)? else {
        return Err(SigningKeyError::Missing {
            key_file: paths.key_file.to_owned(),
            database: paths.database.to_owned(),
            expected: expected.to_owned(),
        });
    };
    if !matches(&signer) {
        return Err(SigningKeyError::Mismatch {
            key_file: paths.key_file.to_owned(),
            database: paths.database.to_owned(),
            found: fingerprint(&signer.verifying_key()),
            expected: expected.to_owned(),
        });
    }
    Ok(signer)
}

/// A log without a chain of keys: the signers (ids) of the last checkpoint of each chain.
async fn legacy_signers(store: &dyn AuditStore) -> Result<Vec<String>, SigningKeyError> {
    let mut ids = Vec::new();
    for chain in store.chains().await? {
        if let Some(cp) = store.checkpoints(&chain).await?.pop()
            && !ids.contains(&cp.signer)
        {
            ids.push(cp.signer);
        }
    }
    Ok(ids)
}
