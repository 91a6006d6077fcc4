//! Verification: walks a chain in sequence order and names the first broken point.
use std::{collections::BTreeMap, fmt};

use serde::Serialize;

use crate::{
    checkpoint::{Checkpoint, CheckpointKind},
    keys::TrustedKeys,
    record::{Digest, Entry, micros},
};

/// What is wrong at a broken point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// Entries are missing: the next stored entry has a higher number than expected
    /// (a deleted record, or a chain start removed without a retention checkpoint).
    Missing { expected: u64, found: u64 },
    /// An entry has a lower number than expected (an inserted or reordered record).
    OutOfOrder { expected: u64, found: u64 },
    /// The entry does not link to the entry before it.
    BrokenLink,
    /// The entry's contents do not match its hash (an edited record).
    HashMismatch,
    /// A value the store keeps beside the body (its chain, its time) differs from the body.
    ColumnMismatch { column: &'static str },
    /// The body is not a record.
    UnreadableBody,
    /// A checkpoint's signature does not verify with the public key.
    BadSignature,
    /// A checkpoint signs a hash the entry at its sequence number does not have.
    CheckpointMismatch,
    /// A checkpoint covers entries that are no longer stored (truncation).
    Truncated { last_stored: u64 },
    /// A link of the chain of signing keys is not signed by the key before it.
    ForgedHandover { previous: String, next: String },
    /// A link of the chain of signing keys holds no valid Ed25519 public key.
    NotAKey,
    /// The first signing key is not the one the verifier was given out of band.
    UntrustedRoot { stored: String, expected: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { expected, found } => write!(
                f,
                "entries are missing: expected {expected}, the next stored entry is {found}"
            ),
            Self::OutOfOrder { expected, found } => write!(
                f,
                "entry out of order or inserted: expected {expected}, found {found}"
            ),
            Self::BrokenLink => f.write_str("does not link to the previous entry's hash"),
            Self::HashMismatch => f.write_str("contents do not match the entry's hash (edited)"),
            Self::ColumnMismatch { column } => {
                write!(f, "column {column} differs from the sealed record (edited)")
            }
            Self::UnreadableBody => f.write_str("the sealed body is not a record"),
            Self::BadSignature => f.write_str("checkpoint signature does not verify"),
            Self::CheckpointMismatch => {
                f.write_str("a signed checkpoint names another hash for this entry")
            }
            Self::Truncated { last_stored } => write!(
                f,
                "a signed checkpoint covers entries after the last stored one ({last_stored}): truncated"
            ),
            Self::ForgedHandover { previous, next } => write!(
                f,
                "the hand-over to key {next} is not signed by the key before it ({previous}): forged"
            ),
            Self::NotAKey => f.write_str("not an Ed25519 public key"),
            Self::UntrustedRoot { stored, expected } => write!(
                f,
                "the log's first signing key is {stored}, not the trusted {expected}: \
                 the log was re-signed with another key"
            ),
        }
    }
}

/// The first broken point of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub chain: String,
    pub seq: u64,
    #[serde(flatten)]
    pub problem: Problem,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.chain == crate::keys::KEY_CHAIN {
            return write!(f, "signing keys at link {}: {}", self.seq, self.problem);
        }
        write!(
            f,
            "chain {} at entry {}: {}",
            self.chain, self.seq, self.problem
        )
    }
}

impl std::error::Error for Break {}

/// What was verified of one intact chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub chain: String,
    /// First and last entry verified (0 when none).
    pub first_seq: u64,
    pub last_seq: u64,
    pub entries: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Where the kept chain starts after retention purges (0: never purged).
    pub retention_anchor: u64,
    /// Entries after the last signed checkpoint: linked by hash, not yet signed.
    pub unsigned_tail: u64,
}

/// Verifies one chain. Feed it the chain's entries in sequence order with [`push`], then call
/// [`finish`].
///
/// [`push`]: ChainVerifier::push
/// [`finish`]: ChainVerifier::finish
#[derive(Debug)]
pub struct ChainVerifier {
    chain: String,
    next_seq: u64,
    /// `None` when verification starts inside the chain (`--from`): the first entry's link is
    /// taken as given.
    prev: Option<Digest>,
    to: Option<u64>,
    pending: BTreeMap<u64, Digest>,
    checkpoints: u64,
    last_signed: u64,
    anchor: u64,
    first_seq: u64,
    last_seq: u64,
    entries: u64,
}

impl ChainVerifier {
    /// Starts on `chain` with its checkpoints, every signature checked with `keys` (one
    /// `VerifyingKey`, or a [`crate::KeyChain`]). `from` and `to` bound the verified range
    /// (sequence numbers, inclusive).
    pub fn new(
        keys: &dyn TrustedKeys,
        chain: &str,
        checkpoints: &[Checkpoint],
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<Self, Break> {
        let broken = |seq, problem| Break {
            chain: chain.to_owned(),
            seq,
            problem,
        };
        let mut anchor: Option<&Checkpoint> = None;
        let mut pending = BTreeMap::new();
        let mut signed = 0;
        for cp in checkpoints {
            if cp.chain != chain || !keys.verifies(cp) {
                return Err(broken(cp.seq, Problem::BadSignature));
            }
            signed += 1;
            match cp.kind {
                CheckpointKind::Retention if anchor.is_none_or(|a| a.seq < cp.seq) => {
                    anchor = Some(cp)
                }
                _ => {}
            }
            if let Some(previous) = pending.insert(cp.seq, cp.hash)
                && previous != cp.hash
            {
                return Err(broken(cp.seq, Problem::CheckpointMismatch));
            }
        }
        let (mut next_seq, mut prev) = match anchor {
            Some(a) => (a.seq + 1, Some(a.hash)),
            None => (1, Some(Digest::ZERO)),
        };
        let anchor_seq = anchor.map_or(0, |a| a.seq);
        if let Some(from) = from.filter(|&f| f > next_seq) {
            next_seq = from;
            prev = None;
        }
        // Checkpoints at or before the start were checked by signature; the rest are matched
        // against the entries as they pass.
        let pending = pending.split_off(&next_seq);
        Ok(Self {
            chain: chain.to_owned(),
            next_seq,
            prev,
            to,
            pending,
            checkpoints: signed,
            last_signed: 0,
            anchor: anchor_seq,
            first_seq: 0,
            last_seq: 0,
            entries: 0,
        })
    }

    fn broken(&self, seq: u64, problem: Problem) -> Break {
        Break {
            chain: self.chain.clone(),
            seq,
            problem,
        }
    }

    /// The next sequence number expected (for reading the store page by page).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Checks the next entry.
    pub fn push(&mut self, entry: &Entry) -> Result<(), Break> {
        let seq = entry.seq;
        if entry.chain != self.chain {
            return Err(self.broken(seq, Problem::ColumnMismatch { column: "chain" }));
        }
        if seq > self.next_seq {
            let expected = self.next_seq;
            return Err(self.broken(
                expected,
                Problem::Missing {
                    expected,
                    found: seq,
                },
            ));
        }
        if seq < self.next_seq {
            let expected = self.next_seq;
            return Err(self.broken(
                seq,
                Problem::OutOfOrder {
                    expected,
                    found: seq,
                },
            ));
        }
        if self.prev.is_some_and(|p| p != entry.prev_hash) {
            return Err(self.broken(seq, Problem::BrokenLink));
        }
        if entry.expected_hash() != entry.hash {
            return Err(self.broken(seq, Problem::HashMismatch));
        }
        let record = entry
            .record()
            .map_err(|_| self.broken(seq, Problem::UnreadableBody))?;
        if record.chain() != self.chain {
            return Err(self.broken(seq, Problem::ColumnMismatch { column: "tenant" }));
        }
        if micros(record.time) != entry.time_micros {
            return Err(self.broken(seq, Problem::ColumnMismatch { column: "time" }));
        }
        if let Some(signed) = self.pending.remove(&seq) {
            if signed != entry.hash {
                return Err(self.broken(seq, Problem::CheckpointMismatch));
            }
            self.last_signed = seq;
        }
        if self.entries == 0 {
            self.first_seq = seq;
        }
        self.entries += 1;
        self.last_seq = seq;
        self.next_seq = seq + 1;
        self.prev = Some(entry.hash);
        Ok(())
    }

    /// Ends the chain: every checkpoint in range must have met its entry.
    pub fn finish(self) -> Result<ChainReport, Break> {
        let last_stored = self.next_seq.saturating_sub(1);
        let mut unmet = self
            .pending
            .keys()
            .filter(|&&s| self.to.is_none_or(|t| s <= t));
        if let Some(&seq) = unmet.next() {
            return Err(self.broken(seq, Problem::Truncated { last_stored }));
        }
        Ok(ChainReport {
            chain: self.chain,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            entries: self.entries,
            checkpoints: self.checkpoints,
            retention_anchor: self.anchor,
            unsigned_tail: self
                .last_seq
                .saturating_sub(self.last_signed.max(self.anchor)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        chain::Chainer,
        checkpoint::CheckpointSigner,
        record::{Kind, Record},
    };
    use time::OffsetDateTime;

    fn log(n: u64) -> (CheckpointSigner, Vec<Entry>, Vec<Checkpoint>) {
        let signer = CheckpointSigner::from_seed(&[5; 32]);
        let mut chainer = Chainer::default();
        let mut entries = Vec::new();
        let mut cps = Vec::new();
        for i in 0..n {
            let mut r =
                Record::new(OffsetDateTime::UNIX_EPOCH, Kind::Request, "request").with("i", i);
            r.tenant = Some("acme".into());
            let e = chainer.seal(&r);
            if e.seq % 4 == 0 {
                cps.push(signer.sign(
                    CheckpointKind::Periodic,
                    "acme",
                    e.seq,
                    e.hash,
                    OffsetDateTime::UNIX_EPOCH,
                ));
            }
            entries.push(e);
        }
        (signer, entries, cps)
    }

    fn run(
        signer: &CheckpointSigner,
        entries: &[Entry],
        cps: &[Checkpoint],
    ) -> Result<ChainReport, Break> {
        let mut v = ChainVerifier::new(&signer.verifying_key(), "acme", cps, None, None)?;
        for e in entries {
            v.push(e)?;
        }
        v.finish()
    }

    /// The entry's body with its detail `i` changed.
    fn with_i(e: &Entry, i: u64) -> Vec<u8> {
        let mut r = e.record().unwrap();
        r.data.insert("i".into(), i.into());
        r.to_body()
    }

    #[test]
    fn intact_chain_verifies() {
        let (s, e, c) = log(10);
        let r = run(&s, &e, &c).unwrap();
        assert_eq!((r.entries, r.checkpoints, r.unsigned_tail), (10, 2, 2));
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let (s, e, c) = log(10);
        let mut edited = e.clone();
        edited[4].body = with_i(&edited[4], 5);
        assert_eq!(
            run(&s, &edited, &c).unwrap_err().problem,
            Problem::HashMismatch
        );

        let mut deleted = e.clone();
        deleted.remove(5);
        let b = run(&s, &deleted, &c).unwrap_err();
        assert_eq!(
            (b.seq, b.problem.clone()),
            (
                6,
                Problem::Missing {
                    expected: 6,
                    found: 7
                }
            )
        );

        let mut reordered = e.clone();
        reordered.swap(2, 3);
        assert!(matches!(
            run(&s, &reordered, &c).unwrap_err().problem,
            Problem::Missing { .. }
        ));

        let truncated = &e[..6];
        let b = run(&s, truncated, &c).unwrap_err();
        assert_eq!(
            (b.seq, b.problem),
            (8, Problem::Truncated { last_stored: 6 })
        );

        let mut column = e.clone();
        column[1].time_micros += 1;
        assert_eq!(
            run(&s, &column, &c).unwrap_err().problem,
            Problem::ColumnMismatch { column: "time" }
        );

        // A rewritten entry with a fresh hash breaks the next link…
        let mut rehashed = e.clone();
        rehashed[2].body = with_i(&rehashed[2], 9);
        rehashed[2].hash = rehashed[2].expected_hash();
        let b = run(&s, &rehashed, &c).unwrap_err();
        assert_eq!((b.seq, b.problem), (4, Problem::BrokenLink));

        // …and a whole rewritten prefix contradicts the signed checkpoint.
        let mut chainer = Chainer::default();
        let rewritten: Vec<Entry> = e
            .iter()
            .map(|x| {
                let mut r = x.record().unwrap();
                r.action = "rewritten".into();
                chainer.seal(&r)
            })
            .collect();
        let b = run(&s, &rewritten, &c).unwrap_err();
        assert_eq!((b.seq, b.problem), (4, Problem::CheckpointMismatch));

        let mut forged = c.clone();
        forged[0].hash = Digest([1; 32]);
        assert_eq!(
            run(&s, &e, &forged).unwrap_err().problem,
            Problem::BadSignature
        );
    }

    #[test]
    fn retention_anchor_starts_the_kept_chain() {
        let (s, e, mut c) = log(10);
        c.push(s.sign(
            CheckpointKind::Retention,
            "acme",
            5,
            e[4].hash,
            OffsetDateTime::UNIX_EPOCH,
        ));
        let r = run(&s, &e[5..], &c).unwrap();
        assert_eq!((r.first_seq, r.entries, r.retention_anchor), (6, 5, 5));
        // Without the anchor the same cut is missing entries.
        assert!(matches!(
            run(&s, &e[5..], &c[..2]).unwrap_err().problem,
            Problem::Missing {
                expected: 1,
                found: 6
            }
        ));
    }

    #[test]
    fn a_range_is_verified_from_inside_the_chain() {
        let (s, e, c) = log(10);
        let mut v = ChainVerifier::new(&s.verifying_key(), "acme", &c, Some(3), Some(6)).unwrap();
        for x in &e[2..6] {
            v.push(x).unwrap();
        }
        let r = v.finish().unwrap();
        assert_eq!((r.first_seq, r.last_seq), (3, 6));
    }
}
