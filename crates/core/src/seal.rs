//! Secrets the server must read back (webhook signing secrets), sealed at rest: AES-256-GCM
//! under a key derived from the pepper ([`Pepper::derive_key`]) with a label of its own, a
//! random 96-bit nonce per seal, and associated data naming the owner of the secret (so a
//! sealed value copied onto another row does not open).
//!
//! Stored form: `sealed:v1:` then the hex of nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes).
//! The version names the format and the key's label, so a later format (envelope encryption)
//! can be told apart and migrated.
use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::hash::Pepper;

/// The prefix of a value sealed by this version.
pub const SEALED_V1_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a stored value did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Not a sealed value of a known version.
    #[error("not a sealed value of a known version")]
    Format,
    /// The key or the associated data is not the one it was sealed with, or it was changed.
    #[error("the sealed value does not open with this key and associated data")]
    Open,
}

/// Seals and opens values with one derived key. `Debug` shows no key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Sealer {
    /// A sealer whose key is derived from `pepper` with the label `info` (one label per kind
    /// of secret, e.g. `portcullis webhook secret v1`).
    pub fn from_pepper(pepper: &Pepper, info: &[u8]) -> Self {
        let key = pepper.derive_key(info);
        Self::from_key(&key)
    }

    /// A sealer with this key.
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// Whether `stored` is in a sealed format (of any version this build knows).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_V1_PREFIX)
    }

    /// The sealed form of `plaintext`, bound to `aad`.
    pub fn seal(&self, plaintext: &str, aad: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("operating system random source failed");
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        let mut out =
            String::with_capacity(SEALED_V1_PREFIX.len() + 2 * (NONCE_LEN + sealed.len()));
        out.push_str(SEALED_V1_PREFIX);
        out.push_str(&hex::encode(nonce));
        out.push_str(&hex::encode(sealed));
        out
    }

    /// The plaintext of `stored`, when it was sealed with this key and `aad`.
    pub fn open(&self, stored: &str, aad: &[u8]) -> Result<SecretString, SealError> {
        let body = stored
            .strip_prefix(SEALED_V1_PREFIX)
            .ok_or(SealError::Format)?;
        let bytes = hex::decode(body).map_err(|_| SealError::Format)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Format);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
                .map_err(|_| SealError::Open)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| SealError::Open)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn sealer() -> Sealer {
        Sealer::from_pepper(&Pepper::generate().0, b"test label")
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_aad_only() {
        let s = sealer();
        let sealed = s.seal("whsec_abc", b"acme\0whk_1");
        assert!(Sealer::is_sealed(&sealed));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(
            s.open(&sealed, b"acme\0whk_1").unwrap().expose_secret(),
            "whsec_abc"
        );
        // Another owner (a row copied elsewhere), another key, another label.
        assert_eq!(
            s.open(&sealed, b"acme\0whk_2").unwrap_err(),
            SealError::Open
        );
        assert_eq!(
            sealer().open(&sealed, b"acme\0whk_1").unwrap_err(),
            SealError::Open
        );
        // Two seals of one value differ (random nonce).
        assert_ne!(sealed, s.seal("whsec_abc", b"acme\0whk_1"));
    }

    #[test]
    fn changed_or_foreign_values_do_not_open() {
        let s = sealer();
        let sealed = s.seal("whsec_abc", b"a");
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(s.open(&flipped, b"a").unwrap_err(), SealError::Open);
        assert_eq!(s.open("whsec_abc", b"a").unwrap_err(), SealError::Format);
        assert_eq!(s.open("sealed:v1:zz", b"a").unwrap_err(), SealError::Format);
        assert_eq!(s.open("sealed:v1:00", b"a").unwrap_err(), SealError::Format);
        assert!(!Sealer::is_sealed("whsec_abc"));
    }
}
