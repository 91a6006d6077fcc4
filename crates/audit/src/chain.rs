//! Sealing records into chains: the writer keeps one [`Head`] per chain.
use std::collections::HashMap;

use crate::record::{Digest, Entry, Sealable};

/// The last entry of a chain: its sequence number and hash (0 and [`Digest::ZERO`] when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub seq: u64,
    pub hash: Digest,
}

/// Seals records one after another, per chain. The writer owns one; it is loaded from the
/// store's heads at start, so numbering continues where the stored log ends.
#[derive(Debug, Default, Clone)]
pub struct Chainer {
    heads: HashMap<String, Head>,
}

impl Chainer {
    /// A chainer continuing the given chain heads.
    pub fn new(heads: impl IntoIterator<Item = (String, Head)>) -> Self {
        Self {
            heads: heads.into_iter().collect(),
        }
    }

    /// Seals `record` as the next entry of its chain.
    pub fn seal(&mut self, record: &dyn Sealable) -> Entry {
        let chain = record.chain();
        let head = match self.heads.get_mut(chain) {
            Some(h) => h,
            None => self.heads.entry(chain.to_owned()).or_default(),
        };
        let entry = Entry::seal(chain, head.seq + 1, head.hash, record);
        *head = Head {
            seq: entry.seq,
            hash: entry.hash,
        };
        entry
    }

    /// The head of `chain`.
    pub fn head(&self, chain: &str) -> Head {
        self.heads.get(chain).copied().unwrap_or_default()
    }

    /// Every chain's head.
    pub fn heads(&self) -> impl Iterator<Item = (&str, Head)> {
        self.heads.iter().map(|(c, h)| (c.as_str(), *h))
    }

    /// Puts chains back to earlier heads (after a batch failed to commit, so the records that
    /// are sealed again get the same numbers).
    pub fn restore(&mut self, heads: impl IntoIterator<Item = (String, Head)>) {
        for (chain, head) in heads {
            self.heads.insert(chain, head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Kind, Record};
    use time::OffsetDateTime;

    fn rec(tenant: Option<&str>) -> Record {
        let mut r = Record::new(OffsetDateTime::UNIX_EPOCH, Kind::Change, "key.create");
        r.tenant = tenant.map(str::to_owned);
        r
    }

    #[test]
    fn chains_are_numbered_and_linked_separately() {
        let mut c = Chainer::default();
        let a1 = c.seal(&rec(Some("acme")));
        let b1 = c.seal(&rec(Some("beta")));
        let a2 = c.seal(&rec(Some("acme")));
        let s1 = c.seal(&rec(None));
        assert_eq!((a1.seq, a1.prev_hash), (1, Digest::ZERO));
        assert_eq!((b1.seq, b1.prev_hash), (1, Digest::ZERO));
        assert_eq!((a2.seq, a2.prev_hash), (2, a1.hash));
        assert_eq!((s1.chain.as_str(), s1.seq), (crate::SYSTEM_CHAIN, 1));
        assert_eq!(
            c.head("acme"),
            Head {
                seq: 2,
                hash: a2.hash
            }
        );
    }

    #[test]
    fn continues_from_loaded_heads() {
        let mut c = Chainer::new([(
            "acme".to_owned(),
            Head {
                seq: 41,
                hash: Digest([9; 32]),
            },
        )]);
        let e = c.seal(&rec(Some("acme")));
        assert_eq!((e.seq, e.prev_hash), (42, Digest([9; 32])));
    }
}
