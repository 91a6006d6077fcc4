//! The chain of checkpoint signing keys: which keys a verifier trusts, and why.
//!
//! The first link holds the log's first (root) public key, signed by itself. Each later link is a
//! hand-over: the key before it signs the next public key, the link's number and its time. A
//! verifier that trusts the root (an out-of-band copy, `portcullis audit verify --public-key`)
//! follows the hand-overs to every key that signed a checkpoint; a key not reached that way is
//! not trusted, and a hand-over the previous key did not sign breaks the chain of keys.
use std::fmt;

use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::{
    checkpoint::{Checkpoint, CheckpointSigner, signer_id},
    store::{AuditStore, AuditStoreError},
    verify::{Break, Problem},
};

/// The name under which a break in the chain of keys is reported (never a tenant id: those
/// cannot start with `_`).
pub const KEY_CHAIN: &str = "_signing_keys";

/// The fingerprint of a public key: `sha256:` and the SHA-256 of its 32 bytes, hex.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// One link of the chain of signing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLink {
    /// 1 for the root, then 2, 3, … without gaps.
    pub seq: u64,
    pub public_key: [u8; 32],
    pub time: OffsetDateTime,
    /// By the previous key (the root: by itself) over [`link_message`].
    pub signature: [u8; 64],
}

/// The bytes a link's signature covers.
fn link_message(seq: u64, previous: &[u8; 32], next: &[u8; 32], time: OffsetDateTime) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(b"portcullis.audit.signing-key.v1\n");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(previous);
    m.extend_from_slice(next);
    m.extend_from_slice(&time.unix_timestamp_nanos().to_be_bytes());
    m
}

impl CheckpointSigner {
    /// The first link of a new chain of keys: this key, signed by itself.
    pub fn root_link(&self, time: OffsetDateTime) -> KeyLink {
        let key = self.verifying_key().to_bytes();
        self.link(1, &key, key, time)
    }

    /// The hand-over from this key to `next`, as link `seq` of the chain.
    pub fn hand_over(&self, seq: u64, next: &VerifyingKey, time: OffsetDateTime) -> KeyLink {
        let previous = self.verifying_key().to_bytes();
        self.link(seq, &previous, next.to_bytes(), time)
    }

    fn link(&self, seq: u64, previous: &[u8; 32], next: [u8; 32], time: OffsetDateTime) -> KeyLink {
        let signature = self
            .signing_key()
            .sign(&link_message(seq, previous, &next, time))
            .to_bytes();
        KeyLink {
            seq,
            public_key: next,
            time,
            signature,
        }
    }
}

/// A trusted key of a verified chain, with when it took over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustedKey {
    pub seq: u64,
    pub fingerprint: String,
    /// Hex.
    pub public_key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// The keys a verifier trusts to have signed checkpoints.
pub trait TrustedKeys: Send + Sync {
    /// Does `cp` carry a valid signature by one of these keys?
    fn verifies(&self, cp: &Checkpoint) -> bool;
}

impl TrustedKeys for VerifyingKey {
    fn verifies(&self, cp: &Checkpoint) -> bool {
        cp.verify(self)
    }
}

/// A verified chain of signing keys, root first (empty for a log that has none stored).
#[derive(Clone, Default)]
pub struct KeyChain {
    keys: Vec<(VerifyingKey, String, OffsetDateTime)>,
}

impl fmt::Debug for KeyChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(k, _, _)| fingerprint(k)))
            .finish()
    }
}

impl TrustedKeys for KeyChain {
    fn verifies(&self, cp: &Checkpoint) -> bool {
        self.keys
            .iter()
            .any(|(key, id, _)| *id == cp.signer && cp.verify(key))
    }
}

impl KeyChain {
    /// Checks `links` (in stored order): numbered from 1 without gaps, the root signed by itself,
    /// every later key signed by the key before it. Names the first link that is not.
    pub fn verify(links: &[KeyLink]) -> Result<Self, Break> {
        let broken = |seq, problem| Break {
            chain: KEY_CHAIN.to_owned(),
            seq,
            problem,
        };
        let mut keys: Vec<(VerifyingKey, String, OffsetDateTime)> = Vec::new();
        for (i, link) in links.iter().enumerate() {
            let expected = i as u64 + 1;
            if link.seq != expected {
                let problem = if link.seq > expected {
                    Problem::Missing {
                        expected,
                        found: link.seq,
                    }
                } else {
                    Problem::OutOfOrder {
                        expected,
                        found: link.seq,
                    }
                };
                return Err(broken(expected, problem));
            }
            let Ok(next) = VerifyingKey::from_bytes(&link.public_key) else {
                return Err(broken(link.seq, Problem::NotAKey));
            };
            let previous = keys.last().map_or(next, |(k, _, _)| *k);
            let m = link_message(link.seq, previous.as_bytes(), &link.public_key, link.time);
            if previous
                .verify_strict(&m, &Signature::from_bytes(&link.signature))
                .is_err()
            {
                return Err(broken(
                    link.seq,
                    Problem::ForgedHandover {
                        previous: fingerprint(&previous),
                        next: fingerprint(&next),
                    },
                ));
            }
            keys.push((next, signer_id(&next), link.time));
        }
        Ok(Self { keys })
    }

    /// Reads and verifies the chain of keys stored in `store`: `Ok(Err(b))` names a broken link.
    pub async fn load(store: &dyn AuditStore) -> Result<Result<Self, Break>, AuditStoreError> {
        Ok(Self::verify(&store.signing_keys().await?))
    }

    /// A chain of one key that no stored chain vouches for (a log from before chains of keys).
    pub fn single(key: VerifyingKey) -> Self {
        Self {
            keys: vec![(key, signer_id(&key), OffsetDateTime::UNIX_EPOCH)],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The first key.
    pub fn root(&self) -> Option<&VerifyingKey> {
        self.keys.first().map(|(k, _, _)| k)
    }

    /// The last key: the one that signs new checkpoints.
    pub fn current(&self) -> Option<&VerifyingKey> {
        self.keys.last().map(|(k, _, _)| k)
    }

    /// How many links the chain has.
    pub fn len(&self) -> u64 {
        self.keys.len() as u64
    }

    /// Every key, root first, for reports.
    pub fn trusted(&self) -> Vec<TrustedKey> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, (k, _, since))| TrustedKey {
                seq: i as u64 + 1,
                fingerprint: fingerprint(k),
                public_key: hex::encode(k.as_bytes()),
                since: *since,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointKind;
    use crate::record::Digest;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(s).unwrap()
    }

    #[test]
    fn a_chain_of_hand_overs_verifies_and_trusts_every_key() {
        let a = CheckpointSigner::from_seed(&[1; 32]);
        let b = CheckpointSigner::from_seed(&[2; 32]);
        let c = CheckpointSigner::from_seed(&[3; 32]);
        let links = vec![
            a.root_link(t(1)),
            a.hand_over(2, &b.verifying_key(), t(2)),
            b.hand_over(3, &c.verifying_key(), t(3)),
        ];
        let chain = KeyChain::verify(&links).unwrap();
        assert_eq!(chain.root(), Some(&a.verifying_key()));
        assert_eq!(chain.current(), Some(&c.verifying_key()));
        for s in [&a, &b, &c] {
            let cp = s.sign(CheckpointKind::Periodic, "acme", 1, Digest([0; 32]), t(4));
            assert!(chain.verifies(&cp));
        }
        let stranger = CheckpointSigner::from_seed(&[9; 32]);
        let cp = stranger.sign(CheckpointKind::Periodic, "acme", 1, Digest([0; 32]), t(4));
        assert!(!chain.verifies(&cp));
    }

    #[test]
    fn a_hand_over_not_signed_by_the_previous_key_is_named() {
        let a = CheckpointSigner::from_seed(&[1; 32]);
        let b = CheckpointSigner::from_seed(&[2; 32]);
        let evil = CheckpointSigner::from_seed(&[6; 32]);
        // The attacker's key signs its own way in.
        let links = vec![
            a.root_link(t(1)),
            evil.hand_over(2, &evil.verifying_key(), t(2)),
        ];
        let b_ = KeyChain::verify(&links).unwrap_err();
        assert_eq!((b_.chain.as_str(), b_.seq), (KEY_CHAIN, 2));
        assert!(matches!(b_.problem, Problem::ForgedHandover { .. }));
        // Any edited field breaks the signature.
        let mut edited = a.hand_over(2, &b.verifying_key(), t(2));
        edited.time = t(3);
        let links = vec![a.root_link(t(1)), edited];
        assert!(KeyChain::verify(&links).is_err());
        // A gap in the numbering.
        let links = vec![a.root_link(t(1)), a.hand_over(3, &b.verifying_key(), t(2))];
        assert!(matches!(
            KeyChain::verify(&links).unwrap_err().problem,
            Problem::Missing { .. }
        ));
    }

    proptest::proptest! {
        /// Whatever byte of whatever link is changed (key, signature, time, number), the chain
        /// of keys no longer verifies: no edit lets another key in.
        #[test]
        fn any_edit_of_any_link_breaks_the_chain(
            seeds in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 1..5),
            which in 0usize..16,
            field in 0u8..4,
            byte in 0usize..64,
            bit in 0u8..8,
        ) {
            let signers: Vec<CheckpointSigner> =
                seeds.iter().map(CheckpointSigner::from_seed).collect();
            let mut links = vec![signers[0].root_link(t(1))];
            for (i, pair) in signers.windows(2).enumerate() {
                let seq = i as u64 + 2;
                links.push(pair[0].hand_over(seq, &pair[1].verifying_key(), t(seq as i64)));
            }
            proptest::prop_assert!(KeyChain::verify(&links).is_ok());
            let i = which % links.len();
            let flip = 1u8 << bit;
            let link = &mut links[i];
            match field {
                0 => link.public_key[byte % 32] ^= flip,
                1 => link.signature[byte] ^= flip,
                2 => link.time += time::Duration::nanoseconds(i64::from(flip)),
                _ => link.seq ^= u64::from(flip),
            }
            proptest::prop_assert!(KeyChain::verify(&links).is_err());
        }
    }
}
