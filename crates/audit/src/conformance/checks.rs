//! The checks of the conformance suite.
use std::sync::Arc;

use super::{all_entries, at, checkpoint, matches, seal, sorted_heads, stored, t0};
use crate::{
    chain::{Chainer, Head},
    checkpoint::CheckpointKind,
    record::{Decision, Kind, SYSTEM_CHAIN, micros},
    store::{AuditFilter, AuditStore},
};

fn head(e: &crate::Entry) -> Head {
    Head {
        seq: e.seq,
        hash: e.hash,
    }
}

/// A new store has no chains, heads, entries or checkpoints.
pub async fn empty_store_is_empty(store: Arc<dyn AuditStore>) {
    assert!(store.heads().await.expect("heads").is_empty());
    assert!(store.chains().await.expect("chains").is_empty());
    assert!(
        store
            .entries("acme", 1, None, 10)
            .await
            .expect("entries")
            .is_empty()
    );
    assert!(
        store
            .checkpoints("acme")
            .await
            .expect("checkpoints")
            .is_empty()
    );
    assert_eq!(store.first_seq_since("acme", 0).await.expect("first"), None);
    let none = store.search("acme", &AuditFilter::default(), 0, 10).await;
    assert!(none.expect("search").is_empty());
}

/// Entries read back exactly as appended (body bytes, hashes, columns, `None`s), and the heads
/// follow every append, per chain.
pub async fn append_round_trips_and_moves_heads(store: Arc<dyn AuditStore>) {
    let mut chainer = Chainer::default();
    let acme = stored(store.as_ref(), &mut chainer, Some("acme"), 5).await;
    let system = stored(store.as_ref(), &mut chainer, None, 3).await;
    assert_eq!(all_entries(store.as_ref(), "acme").await, acme);
    assert_eq!(all_entries(store.as_ref(), SYSTEM_CHAIN).await, system);
    assert_eq!(
        sorted_heads(store.as_ref()).await,
        vec![
            (SYSTEM_CHAIN.to_owned(), head(&system[2])),
            ("acme".to_owned(), head(&acme[4]))
        ]
    );

    let more = stored(store.as_ref(), &mut chainer, Some("acme"), 2).await;
    assert_eq!(more[0].seq, 6);
    let heads = sorted_heads(store.as_ref()).await;
    assert_eq!(heads[1], ("acme".to_owned(), head(&more[1])));
    // A store reopened by a writer continues the same numbering.
    let mut again = Chainer::new(heads);
    assert_eq!(again.seal(&super::record(Some("acme"), 9)).seq, 8);
}

/// An append whose batch holds an entry already stored, a doubled entry or a doubled checkpoint
/// fails as a whole: nothing of it is stored.
pub async fn append_is_atomic(store: Arc<dyn AuditStore>) {
    let mut chainer = Chainer::default();
    let first = stored(store.as_ref(), &mut chainer, Some("acme"), 3).await;
    let heads = sorted_heads(store.as_ref()).await;

    let mut fork = chainer.clone();
    let new_acme = seal(&mut fork, Some("acme"), 3, 2);
    let new_beta = seal(&mut fork, Some("beta"), 0, 2);
    let cp = checkpoint(CheckpointKind::Periodic, &new_acme[1]);
    let mut batches = Vec::new();
    // An entry already stored (same chain and seq), last in the batch.
    let mut b = [new_acme.clone(), new_beta.clone()].concat();
    b.push(first[1].clone());
    batches.push((b, vec![cp.clone()]));
    // The same new entry twice.
    let b = [
        new_acme.clone(),
        new_beta.clone(),
        vec![new_beta[1].clone()],
    ]
    .concat();
    batches.push((b, vec![]));
    // The same checkpoint twice.
    batches.push((new_acme.clone(), vec![cp.clone(), cp.clone()]));

    for (i, (entries, checkpoints)) in batches.iter().enumerate() {
        let r = store.append(entries, checkpoints).await;
        assert!(r.is_err(), "batch {i} must fail");
        assert_eq!(
            all_entries(store.as_ref(), "acme").await,
            first,
            "batch {i}"
        );
        assert!(
            all_entries(store.as_ref(), "beta").await.is_empty(),
            "batch {i}"
        );
        assert!(store.checkpoints("acme").await.expect("cps").is_empty());
        assert_eq!(sorted_heads(store.as_ref()).await, heads, "batch {i}");
    }
    // The same batch without the fault is stored.
    store
        .append(&new_acme, std::slice::from_ref(&cp))
        .await
        .expect("append");
    assert_eq!(store.checkpoints("acme").await.expect("cps"), vec![cp]);
}

/// `entries` reads from `from_seq`, up to `to_seq`, at most `limit`, in order, one chain only.
pub async fn entries_pages_and_bounds(store: Arc<dyn AuditStore>) {
    let mut chainer = Chainer::default();
    let acme = stored(store.as_ref(), &mut chainer, Some("acme"), 25).await;
    stored(store.as_ref(), &mut chainer, Some("acme-2"), 5).await;
    let seqs = |v: Vec<crate::Entry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();

    let p1 = store.entries("acme", 1, None, 10).await.expect("p1");
    assert_eq!(p1, acme[..10]);
    let p3 = store.entries("acme", 21, None, 10).await.expect("p3");
    assert_eq!(p3, acme[20..]);
    let bounded = store.entries("acme", 5, Some(8), 100).await.expect("to");
    assert_eq!(seqs(bounded), vec![5, 6, 7, 8]);
    let one = store.entries("acme", 8, Some(8), 100).await.expect("one");
    assert_eq!(seqs(one), vec![8]);
    assert!(
        store
            .entries("acme", 9, Some(8), 10)
            .await
            .expect("empty")
            .is_empty()
    );
    assert!(
        store
            .entries("acme", 26, None, 10)
            .await
            .expect("past")
            .is_empty()
    );
    let limited = store.entries("acme", 0, Some(20), 3).await.expect("limit");
    assert_eq!(seqs(limited), vec![1, 2, 3]);
    let other = store.entries("acme-2", 1, None, 100).await.expect("other");
    assert_eq!(seqs(other), vec![1, 2, 3, 4, 5]);
    assert!(
        store
            .entries("acm", 1, None, 10)
            .await
            .expect("prefix")
            .is_empty()
    );
}

/// Every search filter, alone and combined; `since` inclusive, `until` exclusive.
pub async fn search_filters(store: Arc<dyn AuditStore>) {
    let mut chainer = Chainer::default();
    let acme = stored(store.as_ref(), &mut chainer, Some("acme"), 40).await;
    // Another chain with the same values, never returned.
    stored(store.as_ref(), &mut chainer, Some("beta"), 40).await;
    let us = |secs| micros(at(secs));
    let filters = [
        AuditFilter::default(),
        AuditFilter {
            since_micros: Some(us(10)),
            ..Default::default()
        },
        AuditFilter {
            until_micros: Some(us(10)),
            ..Default::default()
        },
        AuditFilter {
            since_micros: Some(us(10)),
            until_micros: Some(us(20)),
            ..Default::default()
        },
        AuditFilter {
            since_micros: Some(us(10) + 1),
            until_micros: Some(us(20) + 1),
            ..Default::default()
        },
        AuditFilter {
            key_id: Some("key_a".into()),
            ..Default::default()
        },
        AuditFilter {
            key_id: Some("key_c".into()),
            ..Default::default()
        },
        AuditFilter {
            action: Some("auth.failure".into()),
            ..Default::default()
        },
        AuditFilter {
            kind: Some(Kind::Request),
            ..Default::default()
        },
        AuditFilter {
            kind: Some(Kind::Change),
            ..Default::default()
        },
        AuditFilter {
            decision: Some(Decision::Deny),
            ..Default::default()
        },
        AuditFilter {
            decision: Some(Decision::Allow),
            ..Default::default()
        },
        AuditFilter {
            since_micros: Some(us(5)),
            until_micros: Some(us(35)),
            key_id: Some("key_b".into()),
            action: Some("request".into()),
            kind: Some(Kind::Request),
            decision: Some(Decision::Allow),
        },
    ];
    for f in filters {
        let want: Vec<u64> = acme
            .iter()
            .filter(|e| matches(e, &f))
            .map(|e| e.seq)
            .collect();
        let got = store.search("acme", &f, 0, 1_000).await.expect("search");
        assert!(got.iter().all(|e| e.chain == "acme"));
        let got: Vec<u64> = got.iter().map(|e| e.seq).collect();
        assert_eq!(got, want, "{f:?}");
    }
    let inclusive = AuditFilter {
        since_micros: Some(us(10)),
        until_micros: Some(us(11)),
        ..Default::default()
    };
    let got = store
        .search("acme", &inclusive, 0, 10)
        .await
        .expect("search");
    assert_eq!(got, acme[10..11], "since is inclusive, until exclusive");
}

/// `after_seq` is a cursor: pages of a filtered search follow each other without gaps or
/// repeats, and the full result is returned entries, exactly as stored.
pub async fn search_pages_after_seq(store: Arc<dyn AuditStore>) {
    let mut chainer = Chainer::default();
    let acme = stored(store.as_ref(), &mut chainer, Some("acme"), 50).await;
    let f = AuditFilter {
        key_id: Some("key_b".into()),
        ..Default::default()
    };
    let want: Vec<_> = acme.iter().filter(|e| matches(e, &f)).cloned().collect();
    let mut got = Vec::new();
    let mut after = 0;
    loop {
        let page = store.search("acme", &f, after, 4).await.expect("page");
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = last.seq;
        got.extend(page);
    }
    assert_eq!(got, want);
    let tail = store
        .search("acme", &AuditFilter::default(), 45, 100)
        .await
        .expect("tail");
    assert_eq!(tail, acme[45..]);
}

/// Checkpoints are stored whole (signature, signer, time to the nanosecond) and returned by
/// sequence number, whatever order they were appended in; each chain its own.
pub async fn checkpoints_by_seq(store: Arc<dyn AuditStore>) {
    let mut chainer = Chainer::default();
    let acme = seal(&mut chainer, Some("acme"), 0, 30);
    let beta = seal(&mut chainer, Some("beta"), 0, 10);
    let cp = |i: usize| checkpoint(CheckpointKind::Periodic, &acme[i]);
    let retention = checkpoint(CheckpointKind::Retention, &acme[9]);
    store.append(&acme, &[cp(29)]).await.expect("append");
    store
        .append(&beta, &[checkpoint(CheckpointKind::Periodic, &beta[4])])
        .await
        .expect("b");
    store
        .append(&[], &[cp(9), retention.clone()])
        .await
        .expect("cps only");
    store.append(&[], &[cp(19)]).await.expect("cp");

    let got = store.checkpoints("acme").await.expect("checkpoints");
    let seqs: Vec<u64> = got.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![10, 10, 20, 30]);
    for want in [cp(9), retention, cp(19), cp(29)] {
        assert!(got.contains(&want), "{want:?} read back whole");
    }
    let key = super::signer().verifying_key();
    assert!(got.iter().all(|c| c.verify(&key) && c.time == at(3_600)));
    let beta_cps = store.checkpoints("beta").await.expect("beta");
    assert_eq!(beta_cps.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![5]);
}

/// `first_seq_since`: the first entry at or after a time, per chain.
pub async fn first_seq_since(store: Arc<dyn AuditStore>) {
    let mut chainer = Chainer::default();
    stored(store.as_ref(), &mut chainer, Some("acme"), 10).await; // at t0 + 0..9 s
    stored(store.as_ref(), &mut chainer, Some("beta"), 3).await;
    let first = async |chain: &str, t| store.first_seq_since(chain, t).await.expect("first");
    assert_eq!(first("acme", micros(t0()) - 1).await, Some(1));
    assert_eq!(first("acme", micros(at(4))).await, Some(5), "inclusive");
    assert_eq!(first("acme", micros(at(4)) + 1).await, Some(6));
    assert_eq!(first("acme", micros(at(9))).await, Some(10));
    assert_eq!(first("acme", micros(at(9)) + 1).await, None);
    assert_eq!(first("beta", micros(at(3))).await, None);
    assert_eq!(first("gamma", 0).await, None);
}

/// `purge` removes the chain's entries up to the anchor, stores the retention checkpoint and
/// counts what it removed; other chains, later entries and the head are untouched.
pub async fn purge_removes_only_the_anchored_range(store: Arc<dyn AuditStore>) {
    let mut chainer = Chainer::default();
    let acme = stored(store.as_ref(), &mut chainer, Some("acme"), 20).await;
    let beta = stored(store.as_ref(), &mut chainer, Some("beta"), 20).await;
    let periodic = checkpoint(CheckpointKind::Periodic, &acme[9]);
    store
        .append(&[], std::slice::from_ref(&periodic))
        .await
        .expect("cp");
    let heads = sorted_heads(store.as_ref()).await;

    let anchor = checkpoint(CheckpointKind::Retention, &acme[9]);
    assert_eq!(store.purge("acme", &anchor).await.expect("purge"), 10);
    assert_eq!(all_entries(store.as_ref(), "acme").await, acme[10..]);
    assert_eq!(all_entries(store.as_ref(), "beta").await, beta);
    let cps = store.checkpoints("acme").await.expect("cps");
    assert!(cps.contains(&anchor) && cps.contains(&periodic));
    assert!(store.checkpoints("beta").await.expect("beta").is_empty());
    assert_eq!(sorted_heads(store.as_ref()).await, heads);
    assert_eq!(
        store.first_seq_since("acme", 0).await.expect("first"),
        Some(11)
    );

    let later = checkpoint(CheckpointKind::Retention, &acme[14]);
    assert_eq!(store.purge("acme", &later).await.expect("purge 2"), 5);
    assert_eq!(all_entries(store.as_ref(), "acme").await, acme[15..]);
    let retention = store.checkpoints("acme").await.expect("cps");
    assert_eq!(
        retention
            .iter()
            .filter(|c| c.kind == CheckpointKind::Retention)
            .count(),
        2
    );
}

/// `chains` lists every chain with entries or checkpoints, once, sorted.
pub async fn chains_sorted(store: Arc<dyn AuditStore>) {
    let mut chainer = Chainer::default();
    for tenant in [
        Some("zeta"),
        Some("acme"),
        None,
        Some("acme-eu"),
        Some("Beta"),
    ] {
        stored(store.as_ref(), &mut chainer, tenant, 3).await;
    }
    let only_cp = seal(&mut chainer, Some("middle"), 0, 1);
    store
        .append(&[], &[checkpoint(CheckpointKind::Periodic, &only_cp[0])])
        .await
        .expect("checkpoint only");
    let mut want: Vec<String> = ["zeta", "acme", SYSTEM_CHAIN, "acme-eu", "Beta", "middle"]
        .map(str::to_owned)
        .to_vec();
    want.sort();
    assert_eq!(store.chains().await.expect("chains"), want);
}

/// The chain of signing keys: links come back in order with every field; a link whose number
/// is not the next one (taken by another process, or a gap) is not stored.
pub async fn signing_keys_append_in_order(store: Arc<dyn AuditStore>) {
    let a = super::signer();
    let b = crate::CheckpointSigner::from_seed(&[43; 32]);
    assert!(store.signing_keys().await.unwrap().is_empty());
    let root = a.root_link(t0());
    let next = a.hand_over(2, &b.verifying_key(), at(1));
    assert!(!store.add_signing_key(&next).await.unwrap(), "a gap");
    assert!(store.add_signing_key(&root).await.unwrap());
    assert!(!store.add_signing_key(&root).await.unwrap(), "twice");
    assert!(store.add_signing_key(&next).await.unwrap());
    let other = a.hand_over(2, &a.verifying_key(), at(2));
    assert!(!store.add_signing_key(&other).await.unwrap(), "taken");
    assert_eq!(store.signing_keys().await.unwrap(), vec![root, next]);
    let chain = crate::KeyChain::load(store.as_ref())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chain.current(), Some(&b.verifying_key()));
}
