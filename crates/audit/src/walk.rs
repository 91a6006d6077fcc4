//! Verifying a whole store: every chain (or the chains asked for) read page by page through a
//! [`ChainVerifier`], so memory stays constant whatever the size of the log.
use crate::{
    keys::TrustedKeys,
    store::{AuditStore, AuditStoreError},
    verify::{Break, ChainReport, ChainVerifier, Problem},
};

/// Entries read per [`AuditStore::entries`] call.
pub const PAGE: u32 = 1_000;

/// Verifies the chains of `store` with the checkpoint keys `keys`: `chains` (all of them when
/// `None`, in the store's sorted order), each within the sequence range `from..=to`.
///
/// Returns `Ok(Ok(reports))` when every chain is intact, `Ok(Err(b))` with the first broken
/// point (walking the chains in order), and `Err` when the store cannot be read. A stored entry
/// the store cannot decode ([`AuditStoreError::Corrupt`]) is a broken point
/// ([`Problem::UnreadableBody`]) at its sequence number; an unreadable checkpoint, whose
/// sequence number cannot be told, is returned as the error.
pub async fn verify_store(
    store: &dyn AuditStore,
    keys: &dyn TrustedKeys,
    chains: Option<&[String]>,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<Result<Vec<ChainReport>, Break>, AuditStoreError> {
    let all;
    let chains = match chains {
        Some(c) => c,
        None => {
            all = store.chains().await?;
            &all[..]
        }
    };
    let mut reports = Vec::with_capacity(chains.len());
    for chain in chains {
        match verify_chain(store, keys, chain, from, to).await? {
            Ok(report) => reports.push(report),
            Err(broken) => return Ok(Err(broken)),
        }
    }
    Ok(Ok(reports))
}

/// Verifies one chain (see [`verify_store`]).
pub async fn verify_chain(
    store: &dyn AuditStore,
    keys: &dyn TrustedKeys,
    chain: &str,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<Result<ChainReport, Break>, AuditStoreError> {
    let checkpoints = store.checkpoints(chain).await?;
    let mut verifier = match ChainVerifier::new(keys, chain, &checkpoints, from, to) {
        Ok(v) => v,
        Err(broken) => return Ok(Err(broken)),
    };
    drop(checkpoints);
    // Read from the last entry seen + 1 (not from where the verifier expects the next one to
    // be): an entry with a higher number than expected must come back for the verifier to see
    // the gap.
    let mut cursor = verifier.next_seq();
    while to.is_none_or(|t| cursor <= t) {
        let page = match store.entries(chain, cursor, to, PAGE).await {
            Ok(page) => page,
            Err(AuditStoreError::Corrupt(why)) => {
                return one_by_one(store, verifier, chain, cursor, to, why).await;
            }
            Err(e) => return Err(e),
        };
        let full = page.len() >= PAGE as usize;
        for entry in &page {
            if let Err(broken) = verifier.push(entry) {
                return Ok(Err(broken));
            }
            cursor = entry.seq.saturating_add(1);
        }
        if !full {
            break;
        }
    }
    Ok(verifier.finish())
}

/// A page held an unreadable row: walks the next [`PAGE`] entries one at a time until the
/// unreadable one, and names it. Returns the store's error if it cannot be located.
async fn one_by_one(
    store: &dyn AuditStore,
    mut verifier: ChainVerifier,
    chain: &str,
    mut cursor: u64,
    to: Option<u64>,
    why: String,
) -> Result<Result<ChainReport, Break>, AuditStoreError> {
    for _ in 0..PAGE {
        match store.entries(chain, cursor, to, 1).await {
            Ok(one) => {
                let Some(entry) = one.first() else { break };
                if let Err(broken) = verifier.push(entry) {
                    return Ok(Err(broken));
                }
                cursor = entry.seq.saturating_add(1);
            }
            Err(AuditStoreError::Corrupt(why)) => {
                let Some(seq) = locate(store, chain, cursor, to.unwrap_or(i64::MAX as u64)).await?
                else {
                    return Err(AuditStoreError::Corrupt(why));
                };
                let expected = verifier.next_seq();
                let problem = if seq > expected {
                    Problem::Missing {
                        expected,
                        found: seq,
                    }
                } else {
                    Problem::UnreadableBody
                };
                return Ok(Err(Break {
                    chain: chain.to_owned(),
                    seq: seq.min(expected),
                    problem,
                }));
            }
            Err(e) => return Err(e),
        }
    }
    Err(AuditStoreError::Corrupt(why))
}

/// The sequence number of the first entry at or after `from` (up to `to`), which the store
/// cannot read: the smallest upper bound for which reading that first entry fails.
async fn locate(
    store: &dyn AuditStore,
    chain: &str,
    from: u64,
    to: u64,
) -> Result<Option<u64>, AuditStoreError> {
    let fails = async |upper: u64| match store.entries(chain, from, Some(upper), 1).await {
        Ok(_) => Ok(false),
        Err(AuditStoreError::Corrupt(_)) => Ok(true),
        Err(e) => Err(e),
    };
    if !fails(to).await? {
        return Ok(None);
    }
    let (mut lo, mut hi) = (from, to);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fails(mid).await? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Some(lo))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use time::OffsetDateTime;

    use super::*;
    use crate::{
        chain::{Chainer, Head},
        checkpoint::{Checkpoint, CheckpointKind, CheckpointSigner},
        record::{Digest, Entry, Kind, Record},
        store::AuditFilter,
    };

    /// A test double of the trait for the walker's logic: entries and checkpoints in vectors;
    /// an entry whose seq is in `corrupt` reads as [`AuditStoreError::Corrupt`].
    #[derive(Debug, Default)]
    struct MemStore {
        entries: Mutex<Vec<Entry>>,
        checkpoints: Mutex<Vec<Checkpoint>>,
        corrupt: Mutex<Vec<(String, u64)>>,
        reads: Mutex<Vec<u32>>,
    }

    #[async_trait]
    impl AuditStore for MemStore {
        async fn heads(&self) -> Result<Vec<(String, Head)>, AuditStoreError> {
            unimplemented!("not used by the walker")
        }

        async fn append(&self, e: &[Entry], c: &[Checkpoint]) -> Result<(), AuditStoreError> {
            self.entries.lock().unwrap().extend_from_slice(e);
            self.checkpoints.lock().unwrap().extend_from_slice(c);
            Ok(())
        }

        async fn chains(&self) -> Result<Vec<String>, AuditStoreError> {
            let mut c: Vec<String> = self
                .entries
                .lock()
                .unwrap()
                .iter()
                .map(|e| e.chain.clone())
                .collect();
            c.sort();
            c.dedup();
            Ok(c)
        }

        async fn entries(
            &self,
            chain: &str,
            from_seq: u64,
            to_seq: Option<u64>,
            limit: u32,
        ) -> Result<Vec<Entry>, AuditStoreError> {
            self.reads.lock().unwrap().push(limit);
            let mut page: Vec<Entry> = self
                .entries
                .lock()
                .unwrap()
                .iter()
                .filter(|e| {
                    e.chain == chain && e.seq >= from_seq && to_seq.is_none_or(|t| e.seq <= t)
                })
                .cloned()
                .collect();
            page.sort_by_key(|e| e.seq);
            page.truncate(limit as usize);
            let corrupt = self.corrupt.lock().unwrap();
            if page
                .iter()
                .any(|e| corrupt.contains(&(e.chain.clone(), e.seq)))
            {
                return Err(AuditStoreError::Corrupt("bad row".into()));
            }
            Ok(page)
        }

        async fn search(
            &self,
            _: &str,
            _: &AuditFilter,
            _: u64,
            _: u32,
        ) -> Result<Vec<Entry>, AuditStoreError> {
            unimplemented!("not used by the walker")
        }

        async fn checkpoints(&self, chain: &str) -> Result<Vec<Checkpoint>, AuditStoreError> {
            let mut c: Vec<Checkpoint> = self
                .checkpoints
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.chain == chain)
                .cloned()
                .collect();
            c.sort_by_key(|c| c.seq);
            Ok(c)
        }

        async fn first_seq_since(&self, _: &str, _: i64) -> Result<Option<u64>, AuditStoreError> {
            unimplemented!("not used by the walker")
        }

        async fn purge(&self, _: &str, _: &Checkpoint) -> Result<u64, AuditStoreError> {
            unimplemented!("not used by the walker")
        }
    }

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed(&[8; 32])
    }

    /// `n` entries in each of `chains`, a periodic checkpoint every 100.
    async fn store(chains: &[&str], n: u64) -> MemStore {
        let s = MemStore::default();
        let mut chainer = Chainer::default();
        for chain in chains {
            for i in 0..n {
                let mut r =
                    Record::new(OffsetDateTime::UNIX_EPOCH, Kind::Request, "request").with("i", i);
                r.tenant = Some((*chain).to_owned());
                let e = chainer.seal(&r);
                let cps = if e.seq.is_multiple_of(100) {
                    vec![signer().sign(
                        CheckpointKind::Periodic,
                        chain,
                        e.seq,
                        e.hash,
                        OffsetDateTime::UNIX_EPOCH,
                    )]
                } else {
                    vec![]
                };
                s.append(&[e], &cps).await.unwrap();
            }
        }
        s
    }

    async fn walk(
        s: &MemStore,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<Vec<ChainReport>, Break> {
        verify_store(s, &signer().verifying_key(), None, from, to)
            .await
            .expect("store readable")
    }

    fn remove(s: &MemStore, chain: &str, seq: u64) {
        s.entries
            .lock()
            .unwrap()
            .retain(|e| !(e.chain == chain && e.seq == seq));
    }

    #[tokio::test]
    async fn reads_every_chain_page_by_page() {
        let s = store(&["acme", "beta"], 2_500).await;
        let reports = walk(&s, None, None).await.unwrap();
        assert_eq!(reports.len(), 2);
        assert_eq!(
            (
                reports[1].chain.as_str(),
                reports[1].entries,
                reports[1].checkpoints
            ),
            ("beta", 2_500, 25)
        );
        let reads = s.reads.lock().unwrap();
        assert!(reads.iter().all(|&l| l == PAGE), "pages only: {reads:?}");
        assert_eq!(reads.len(), 6, "3 pages a chain");
    }

    #[tokio::test]
    async fn a_gap_at_a_page_boundary_is_missing_not_skipped() {
        let s = store(&["acme"], 2_500).await;
        remove(&s, "acme", 1_001);
        let b = walk(&s, None, None).await.unwrap_err();
        assert_eq!(
            (b.seq, b.problem),
            (
                1_001,
                Problem::Missing {
                    expected: 1_001,
                    found: 1_002
                }
            )
        );
    }

    #[tokio::test]
    async fn the_first_broken_chain_is_named() {
        let s = store(&["acme", "beta", "gamma"], 50).await;
        remove(&s, "gamma", 3);
        remove(&s, "beta", 7);
        let b = walk(&s, None, None).await.unwrap_err();
        assert_eq!((b.chain.as_str(), b.seq), ("beta", 7));
        assert_eq!(
            b.problem,
            Problem::Missing {
                expected: 7,
                found: 8
            }
        );
        let only_acme = verify_store(
            &s,
            &signer().verifying_key(),
            Some(&["acme".to_owned()]),
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!(only_acme.unwrap()[0].entries, 50);
    }

    #[tokio::test]
    async fn a_range_reads_only_its_entries() {
        let s = store(&["acme"], 3_000).await;
        remove(&s, "acme", 2_900);
        let r = walk(&s, Some(500), Some(2_100)).await.unwrap();
        assert_eq!(
            (r[0].first_seq, r[0].last_seq, r[0].entries),
            (500, 2_100, 1_601)
        );
        assert!(walk(&s, Some(500), None).await.is_err());
    }

    #[tokio::test]
    async fn an_unreadable_row_is_a_broken_point() {
        let s = store(&["acme"], 1_500).await;
        s.corrupt.lock().unwrap().push(("acme".into(), 1_234));
        let b = walk(&s, None, None).await.unwrap_err();
        assert_eq!((b.seq, b.problem), (1_234, Problem::UnreadableBody));

        // Behind a gap, the gap comes first.
        remove(&s, "acme", 1_233);
        let b = walk(&s, None, None).await.unwrap_err();
        assert_eq!(
            (b.seq, b.problem),
            (
                1_233,
                Problem::Missing {
                    expected: 1_233,
                    found: 1_234
                }
            )
        );
    }

    #[tokio::test]
    async fn a_forged_link_between_pages_is_found() {
        let s = store(&["acme"], 1_200).await;
        for e in s
            .entries
            .lock()
            .unwrap()
            .iter_mut()
            .filter(|e| e.seq == 1_001)
        {
            e.prev_hash = Digest([1; 32]);
            e.hash = e.expected_hash();
        }
        let b = walk(&s, None, None).await.unwrap_err();
        assert_eq!((b.seq, b.problem), (1_001, Problem::BrokenLink));
    }
}
