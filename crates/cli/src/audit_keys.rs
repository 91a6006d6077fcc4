//! The audit signing keys on the command line: which keys `audit verify` trusts (the stored
//! chain of keys, checked against an out-of-band copy of its first key with `--public-key`),
//! `audit public-key`, and `audit rotate-signing-key` (a hand-over signed by the old key).
use std::path::{Path, PathBuf};

use portcullis_audit::{
    AuditStore, Break, CheckpointSigner, KEY_CHAIN, KeyChain, Problem, TrustedKey,
    checkpoint::verifying_key_from_hex, fingerprint,
};
use portcullis_server::{Config, audit::signing};
use portcullis_sqlite::SqliteAuditStore;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::{Failure, output::Output};

fn usage(m: impl std::fmt::Display) -> Failure {
    Failure::Usage(m.to_string())
}

/// An Ed25519 public key from `--public-key`: 64 hex characters, or a file holding them.
pub fn public_key_arg(arg: &str) -> Result<portcullis_audit::VerifyingKey, Failure> {
    if let Some(key) = verifying_key_from_hex(arg) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(arg).map_err(|e| {
        usage(format!(
            "--public-key must be an Ed25519 public key in 64 hex characters, or a file holding \
             one ({arg}: {e})"
        ))
    })?;
    verifying_key_from_hex(&text).ok_or_else(|| {
        usage(format!(
            "--public-key file {arg} does not hold an Ed25519 public key in 64 hex characters"
        ))
    })
}

/// The keys a verification trusts, and how far they are vouched for.
#[derive(Debug, Serialize)]
pub struct Trust {
    /// Root first.
    pub keys: Vec<TrustedKey>,
    /// Was the root checked against an out-of-band copy (`--public-key`)?
    pub root_checked: bool,
    /// Where the root came from.
    pub root_from: &'static str,
    #[serde(skip)]
    pub chain: KeyChain,
}

impl Trust {
    /// The lines `audit verify` prints before its verdict.
    pub fn print(&self) {
        for k in &self.keys {
            let role = if k.seq == 1 {
                format!("root key ({})", self.root_from)
            } else {
                format!("handed over at {}", rfc3339(k.since))
            };
            println!("trusted signing key {}: {} {role}", k.seq, k.fingerprint);
        }
        if !self.root_checked {
            println!(
                "(the root key was not checked against an out-of-band copy: give --public-key)"
            );
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Which keys to trust: the stored chain of keys from its first key, which must be `expected`
/// when given. A log without a stored chain is verified with `expected`, or else the key file.
/// `Ok(Err(b))`: the chain of keys is broken or its root is not `expected`.
pub async fn trust(
    config: &Config,
    store: &SqliteAuditStore,
    expected: Option<&str>,
) -> Result<Result<Trust, Break>, Failure> {
    let expected = expected.map(public_key_arg).transpose()?;
    let links = store
        .signing_keys()
        .await
        .map_err(|e| usage(format!("audit log: {e}")))?;
    let chain = match KeyChain::verify(&links) {
        Ok(chain) => chain,
        Err(b) => return Ok(Err(b)),
    };
    let (chain, root_from) = match (chain.root(), expected) {
        (Some(root), Some(want)) if *root != want => {
            return Ok(Err(Break {
                chain: KEY_CHAIN.to_owned(),
                seq: 1,
                problem: Problem::UntrustedRoot {
                    stored: fingerprint(root),
                    expected: fingerprint(&want),
                },
            }));
        }
        (Some(_), Some(_)) => (chain, "matches --public-key"),
        (Some(_), None) => (chain, "from the audit log"),
        (None, Some(want)) => (KeyChain::single(want), "--public-key"),
        (None, None) => (
            KeyChain::single(key_file(config)?.verifying_key()),
            "key file",
        ),
    };
    Ok(Ok(Trust {
        keys: chain.trusted(),
        root_checked: expected.is_some(),
        root_from,
        chain,
    }))
}

/// Reads the signing key file; never creates one.
pub fn key_file(config: &Config) -> Result<CheckpointSigner, Failure> {
    let path = config.audit_signing_key_file();
    CheckpointSigner::load(&path)
        .map_err(usage)?
        .ok_or_else(|| {
            usage(format!(
                "no audit signing key at {} (give --public-key to verify with a public key)",
                path.display()
            ))
        })
}

/// `audit public-key`: the key file's public key, and the log's first (root) key, which is the
/// one to keep out of band.
pub async fn public_key(
    config: &Config,
    store: Option<&SqliteAuditStore>,
    out: &Output,
) -> Result<(), Failure> {
    let s = key_file(config)?;
    let mut v = json!({
        "public_key": s.public_key_hex(),
        "signer": s.id(),
        "fingerprint": fingerprint(&s.verifying_key()),
    });
    if let Some(store) = store {
        let links = store
            .signing_keys()
            .await
            .map_err(|e| usage(format!("audit log: {e}")))?;
        if let Some(root) = links.first() {
            v["root_public_key"] = hex::encode(root.public_key).into();
            v["root_fingerprint"] = portcullis_audit::VerifyingKey::from_bytes(&root.public_key)
                .map(|k| fingerprint(&k))
                .unwrap_or_default()
                .into();
        }
    }
    out.one(&v);
    Ok(())
}

/// Where a rotation writes the new key before the hand-over is stored.
fn staged(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".new");
    PathBuf::from(s)
}

/// `audit rotate-signing-key`: a new key, handed over by the current one. Returns the old and
/// new fingerprints. The new key is written beside the old one first (`….new`, mode 0600), the
/// hand-over stored, then the new key file moved over the old.
pub async fn rotate(
    config: &Config,
    store: &SqliteAuditStore,
) -> Result<(String, String), Failure> {
    let key_path = config.audit_signing_key_file();
    let database = config.audit_database();
    let paths = signing::Paths {
        key_file: &key_path,
        database: &database,
    };
    let fail = |e: signing::SigningKeyError| usage(e);
    let (old, _) = signing::load_signer(store, paths).await.map_err(fail)?;
    let chain = signing::load_chain(store, paths).await.map_err(fail)?;
    let new = CheckpointSigner::generate().map_err(usage)?;
    let stage = staged(&key_path);
    new.write_new(&stage).map_err(|e| {
        usage(format!(
            "{e} (a rotation that stopped half-way leaves {}: remove it and rotate again)",
            stage.display()
        ))
    })?;
    let link = old.hand_over(
        chain.len() + 1,
        &new.verifying_key(),
        OffsetDateTime::now_utc(),
    );
    let stored = store.add_signing_key(&link).await;
    if !matches!(stored, Ok(true)) {
        let _ = std::fs::remove_file(&stage);
        return Err(match stored {
            Err(e) => usage(format!("audit log: {e}")),
            _ => usage("another process changed the signing keys at the same time; try again"),
        });
    }
    std::fs::rename(&stage, &key_path).map_err(|e| {
        usage(format!(
            "the hand-over is stored, but the new key could not replace {}: {e}. Move {} to {} \
             by hand before starting the server",
            key_path.display(),
            stage.display(),
            key_path.display()
        ))
    })?;
    Ok((
        fingerprint(&old.verifying_key()),
        fingerprint(&new.verifying_key()),
    ))
}
