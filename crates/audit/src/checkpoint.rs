//! Checkpoints: an Ed25519 signature over a chain head.
//!
//! The signing key is a 32-byte seed kept hex-encoded in a file of mode 0600 (created on first
//! use), or given in the configuration. Its public half verifies every checkpoint; a reviewer
//! can hold a copy of the public key (`portcullis audit public-key`) and verify an exported log.
//! A key is replaced only by a signed hand-over (see [`crate::keys`]).
use std::{fmt, io, path::Path};

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::record::Digest;

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// Every N records or T seconds.
    Periodic,
    /// A retention purge removed the entries up to and including `seq`: the kept chain starts at
    /// `seq + 1` with previous hash `hash`.
    Retention,
}

impl CheckpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Periodic => "periodic",
            Self::Retention => "retention",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "periodic" => Some(Self::Periodic),
            "retention" => Some(Self::Retention),
            _ => None,
        }
    }
}

/// A signed chain head.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub chain: String,
    pub seq: u64,
    pub hash: Digest,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub kind: CheckpointKind,
    /// Which key signed it: the first 8 bytes of SHA-256 of the public key, hex.
    pub signer: String,
    #[serde(with = "hex_sig")]
    pub signature: [u8; 64],
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("chain", &self.chain)
            .field("seq", &self.seq)
            .field("hash", &self.hash)
            .field("kind", &self.kind)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

mod hex_sig {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(sig))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// The bytes a checkpoint signs.
fn message(
    kind: CheckpointKind,
    chain: &str,
    seq: u64,
    hash: &Digest,
    time: OffsetDateTime,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(96 + chain.len());
    m.extend_from_slice(b"portcullis.audit.checkpoint.v1\n");
    m.extend_from_slice(kind.as_str().as_bytes());
    m.push(b'\n');
    m.extend_from_slice(chain.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&hash.0);
    m.extend_from_slice(&time.unix_timestamp_nanos().to_be_bytes());
    m
}

/// The id of a public key: the first 8 bytes of its SHA-256, hex.
pub fn signer_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

impl Checkpoint {
    /// Checks the signature with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        if self.signer != signer_id(key) {
            return false;
        }
        let m = message(self.kind, &self.chain, self.seq, &self.hash, self.time);
        key.verify(&m, &Signature::from_bytes(&self.signature))
            .is_ok()
    }
}

/// Loading or creating the signing key failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    #[error("audit signing key {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("audit signing key {0}: expected 64 hex characters")]
    Malformed(String),
    #[error("audit signing key {0}: readable by others (mode must be 0600)")]
    Permissions(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// The checkpoint signing key. `Debug` shows only its public id; the seed is zeroed on drop
/// (ed25519-dalek's `zeroize` feature).
#[derive(Clone)]
pub struct CheckpointSigner {
    key: SigningKey,
    id: String,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("signer", &self.id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A signer from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let id = signer_id(&key.verifying_key());
        Self { key, id }
    }

    /// A signer from a seed given as 64 hex characters.
    pub fn from_hex(hex_seed: &str, origin: &str) -> Result<Self, SignerError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_seed.trim(), seed.as_mut())
            .map_err(|_| SignerError::Malformed(origin.to_owned()))?;
        Ok(Self::from_seed(&seed))
    }

    /// A new random signer.
    pub fn generate() -> Result<Self, SignerError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| SignerError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// Reads the key file at `path`; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>, SignerError> {
        if !path.exists() {
            return Ok(None);
        }
        Self::load_or_create(path).map(Some)
    }

    /// Writes this key to a new file at `path` (mode 0600); an existing file is never replaced.
    pub fn write_new(&self, path: &Path) -> Result<(), SignerError> {
        let seed = Zeroizing::new(hex::encode(self.key.to_bytes()));
        write_private(path, seed.as_bytes()).map_err(|source| SignerError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads the key file at `path`, or creates it (mode 0600) with a new random key. A file
    /// that others can read is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, SignerError> {
        let shown = path.display().to_string();
        let io_err = |source| SignerError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                check_private(path).map_err(|e| match e {
                    None => SignerError::Permissions(shown.clone()),
                    Some(e) => io_err(e),
                })?;
                Self::from_hex(&text, &shown)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let signer = Self::generate()?;
                let seed = Zeroizing::new(hex::encode(signer.key.to_bytes()));
                write_private(path, seed.as_bytes()).map_err(io_err)?;
                Ok(signer)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key that verifies this signer's checkpoints.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key, hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// This signer's id (see [`signer_id`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Signs the head (`seq`, `hash`) of `chain` at `time`.
    pub fn sign(
        &self,
        kind: CheckpointKind,
        chain: &str,
        seq: u64,
        hash: Digest,
        time: OffsetDateTime,
    ) -> Checkpoint {
        let signature = self
            .key
            .sign(&message(kind, chain, seq, &hash, time))
            .to_bytes();
        Checkpoint {
            chain: chain.to_owned(),
            seq,
            hash,
            time,
            kind,
            signer: self.id.clone(),
            signature,
        }
    }
}

/// Parses a public key given as 64 hex characters.
pub fn verifying_key_from_hex(s: &str) -> Option<VerifyingKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut bytes).ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), Option<io::Error>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_err(Some)?.permissions().mode();
    if mode & 0o077 != 0 { Err(None) } else { Ok(()) }
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), Option<io::Error>> {
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_cover_every_field() {
        let s = CheckpointSigner::from_seed(&[3; 32]);
        let t = OffsetDateTime::UNIX_EPOCH;
        let cp = s.sign(CheckpointKind::Periodic, "acme", 10, Digest([1; 32]), t);
        let key = s.verifying_key();
        assert!(cp.verify(&key));
        let mut c = cp.clone();
        c.seq = 11;
        assert!(!c.verify(&key));
        let mut c = cp.clone();
        c.hash = Digest([2; 32]);
        assert!(!c.verify(&key));
        let mut c = cp.clone();
        c.chain = "beta".into();
        assert!(!c.verify(&key));
        let mut c = cp.clone();
        c.kind = CheckpointKind::Retention;
        assert!(!c.verify(&key));
        let mut c = cp.clone();
        c.time = t + time::Duration::SECOND;
        assert!(!c.verify(&key));
        let other = CheckpointSigner::from_seed(&[4; 32]);
        assert!(!cp.verify(&other.verifying_key()));
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-signing.key");
        let a = CheckpointSigner::load_or_create(&path).unwrap();
        let b = CheckpointSigner::load_or_create(&path).unwrap();
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        assert!(!format!("{a:?}").contains(&hex::encode(a.key.to_bytes())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                CheckpointSigner::load_or_create(&path),
                Err(SignerError::Permissions(_))
            ));
        }
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_private(&path, b"not hex").unwrap();
        assert!(matches!(
            CheckpointSigner::load_or_create(&path),
            Err(SignerError::Malformed(_))
        ));
    }
}
