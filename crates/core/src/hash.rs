//! The keyed hash a key is stored as: HMAC-SHA256(pepper, key). Without the pepper, a stolen
//! database cannot be used to test guesses offline. The pepper is also the input key material
//! of the keys derived from it ([`Pepper::derive_key`], HKDF-SHA256, one `info` label per use).
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a generated pepper.
pub const PEPPER_LEN: usize = 32;

/// The salt of HKDF-Extract over the pepper (fixed: the pepper is already random).
const HKDF_SALT: &[u8] = b"portcullis pepper hkdf v1";

/// The server pepper. Its `Debug` output is redacted; the raw bytes are zeroed once the HMAC key
/// schedule and the HKDF pseudorandom key have been derived from them.
#[derive(Clone)]
pub struct Pepper {
    mac: HmacSha256,
    kdf: Hkdf<Sha256>,
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper([REDACTED])")
    }
}

/// Why a pepper was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PepperError {
    #[error("pepper must be at least 32 bytes (64 hex characters)")]
    TooShort,
    #[error("pepper must be hex encoded")]
    NotHex,
}

impl Pepper {
    /// A pepper from raw bytes (at least 32). The input is zeroed.
    pub fn from_bytes(bytes: &mut [u8]) -> Result<Self, PepperError> {
        if bytes.len() < PEPPER_LEN {
            bytes.zeroize();
            return Err(PepperError::TooShort);
        }
        let mac = HmacSha256::new_from_slice(bytes).map_err(|_| PepperError::TooShort)?;
        let kdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), bytes);
        bytes.zeroize();
        Ok(Self { mac, kdf })
    }

    /// A pepper from its hex form (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, PepperError> {
        let mut bytes = hex::decode(text.trim()).map_err(|_| PepperError::NotHex)?;
        let r = Self::from_bytes(&mut bytes);
        bytes.zeroize();
        r
    }

    /// Generates a new random pepper and returns it with its hex form (to be written to disk).
    pub fn generate() -> (Self, secrecy::SecretString) {
        let mut bytes = [0u8; PEPPER_LEN];
        getrandom::fill(&mut bytes).expect("operating system random source failed");
        let text = secrecy::SecretString::from(hex::encode(bytes));
        let pepper = Self::from_bytes(&mut bytes).expect("32 bytes is long enough");
        (pepper, text)
    }

    /// A 32-byte key for one use, named by `info` (HKDF-SHA256 expand): keys of different
    /// labels are independent, and none reveals the pepper or the key hashes.
    pub fn derive_key(&self, info: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        self.kdf
            .expand(info, out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    /// The stored form of a key.
    pub fn hash(&self, key: &str) -> KeyHash {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        KeyHash(mac.finalize().into_bytes().into())
    }
}

/// HMAC-SHA256 of a key. Not secret by itself, but compared in constant time anyway.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_pepper_and_key() {
        let (a, _) = Pepper::generate();
        let (b, _) = Pepper::generate();
        assert_eq!(a.hash("k1"), a.hash("k1"));
        assert_ne!(a.hash("k1"), a.hash("k2"));
        assert_ne!(a.hash("k1"), b.hash("k1"));
        assert!(a.hash("k1").ct_eq(&a.hash("k1")));
        assert!(!a.hash("k1").ct_eq(&a.hash("k2")));
    }

    #[test]
    fn derived_keys_depend_on_pepper_and_label() {
        let (a, text) = Pepper::generate();
        let (b, _) = Pepper::generate();
        let again = Pepper::from_hex(secrecy::ExposeSecret::expose_secret(&text)).unwrap();
        assert_eq!(*a.derive_key(b"x"), *again.derive_key(b"x"));
        assert_ne!(*a.derive_key(b"x"), *a.derive_key(b"y"));
        assert_ne!(*a.derive_key(b"x"), *b.derive_key(b"x"));
        assert_ne!(a.derive_key(b"x").to_vec(), a.hash("x").0.to_vec());
    }

    #[test]
    fn hex_roundtrip_and_short_pepper_refused() {
        let (p, text) = Pepper::generate();
        use secrecy::ExposeSecret;
        let q = Pepper::from_hex(text.expose_secret()).expect("valid");
        assert_eq!(p.hash("x"), q.hash("x"));
        assert_eq!(Pepper::from_hex("abcd").err(), Some(PepperError::TooShort));
        assert_eq!(Pepper::from_hex("zz").err(), Some(PepperError::NotHex));
        let h = p.hash("x");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert!(!format!("{p:?}").contains(text.expose_secret()));
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2 uses a short key; here a 32-byte key of 0x0b.
        let mut key = [0x0bu8; 32];
        let p = Pepper::from_bytes(&mut key).expect("valid");
        assert_eq!(key, [0u8; 32], "input zeroed");
        assert_eq!(p.hash("Hi There").to_hex().len(), 64);
    }
}
