//! The audit conformance suite against [`SqliteAuditStore`], in memory
//! and on a file, and what only this layout has: blocks of every size, reads across block
//! boundaries, purges cutting a block, refused appends that do not follow the chain head.
use std::{path::PathBuf, sync::Arc};

use portcullis_audit::{
    AuditFilter, AuditStore, Chainer, CheckpointKind,
    conformance::{all_entries, checkpoint, seal, sorted_heads, stored},
};
use portcullis_core::ids;
use portcullis_sqlite::SqliteAuditStore;

portcullis_audit::conformance_tests!(in_memory, async {
    Arc::new(
        SqliteAuditStore::open_in_memory()
            .await
            .expect("memory store"),
    ) as Arc<dyn AuditStore>
});

portcullis_audit::conformance_tests!(on_file, async {
    let store = SqliteAuditStore::open(&temp_db())
        .await
        .expect("file store");
    Arc::new(store) as Arc<dyn AuditStore>
});

/// A fresh database path under the target directory (kept for inspection after a failure;
/// those of runs older than an hour are removed).
fn temp_db() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portcullis-audit-blocks");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3_600);
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if e.metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < old)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    dir.join(format!("{}.sqlite3", ids::new_id("audit")))
}

#[tokio::test]
async fn file_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.sqlite3");
    let store = SqliteAuditStore::open(&path).await.expect("open");
    let mut chainer = Chainer::default();
    let acme = stored(&store, &mut chainer, Some("acme"), 1_200).await;
    let heads = sorted_heads(&store).await;
    store.close().await;

    let store = SqliteAuditStore::open(&path).await.expect("reopen");
    assert_eq!(sorted_heads(&store).await, heads);
    assert_eq!(all_entries(&store, "acme").await, acme);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the audit file is private to its owner");
    }
}

/// Blocks of 1, 2, 3… entries: every range read, however it falls on block boundaries, gives
/// exactly the entries asked for, and long reads take many blocks.
#[tokio::test]
async fn reads_cross_block_boundaries() {
    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    let mut chainer = Chainer::default();
    let mut acme = Vec::new();
    for n in 1..=30 {
        acme.extend(stored(&store, &mut chainer, Some("acme"), n).await);
        stored(&store, &mut chainer, Some("beta"), 1).await;
    }
    let total = acme.len() as u64; // 465 entries in 30 blocks
    for from in [0, 1, 2, 3, 4, 6, 7, 100, 464, 465, 466] {
        for to in [None, Some(1), Some(5), Some(6), Some(300), Some(465)] {
            for limit in [1, 2, 7, 1_000] {
                let got = store.entries("acme", from, to, limit).await.expect("read");
                let want: Vec<_> = acme
                    .iter()
                    .filter(|e| e.seq >= from && to.is_none_or(|t| e.seq <= t))
                    .take(limit as usize)
                    .cloned()
                    .collect();
                assert_eq!(got, want, "from {from} to {to:?} limit {limit}");
            }
        }
    }
    assert_eq!(all_entries(&store, "acme").await.len() as u64, total);
    let all = store
        .search("acme", &AuditFilter::default(), 0, 1_000)
        .await
        .expect("search");
    assert_eq!(all, acme);
}

/// A purge anchored inside a block keeps the rest of that block; the counts are exact.
#[tokio::test]
async fn purge_cuts_inside_a_block() {
    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    let mut chainer = Chainer::default();
    let mut acme = Vec::new();
    for _ in 0..4 {
        acme.extend(stored(&store, &mut chainer, Some("acme"), 10).await);
    }
    let anchor = checkpoint(CheckpointKind::Retention, &acme[14]);
    assert_eq!(store.purge("acme", &anchor).await.expect("purge"), 15);
    assert_eq!(all_entries(&store, "acme").await, acme[15..]);
    assert_eq!(
        store.first_seq_since("acme", 0).await.expect("first"),
        Some(16)
    );
    let at_end = checkpoint(CheckpointKind::Retention, &acme[29]);
    assert_eq!(store.purge("acme", &at_end).await.expect("purge"), 15);
    assert_eq!(all_entries(&store, "acme").await, acme[30..]);

    // An anchor whose hash is not the stored entry's removes nothing.
    let mut wrong = checkpoint(CheckpointKind::Retention, &acme[34]);
    wrong.hash = acme[35].hash;
    assert!(store.purge("acme", &wrong).await.is_err());
    assert_eq!(all_entries(&store, "acme").await, acme[30..]);
}

/// A block that does not start right after its chain's last entry is refused, and the whole
/// append with it.
#[tokio::test]
async fn appends_must_follow_the_chain_head() {
    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    let mut chainer = Chainer::default();
    let first = stored(&store, &mut chainer, Some("acme"), 5).await;
    let heads = sorted_heads(&store).await;
    let mut fork = chainer.clone();
    let beta = seal(&mut fork, Some("beta"), 0, 2);
    let after_gap = {
        let mut c = chainer.clone();
        seal(&mut c, Some("acme"), 0, 3)[1..].to_vec()
    };
    let overlapping = first[3..].to_vec();
    let reordered = {
        let mut c = chainer.clone();
        let mut v = seal(&mut c, Some("acme"), 0, 2);
        v.swap(0, 1);
        v
    };
    for bad in [after_gap, overlapping, reordered] {
        let batch = [beta.clone(), bad].concat();
        let e = store.append(&batch, &[]).await.expect_err("refused");
        assert!(e.to_string().contains("sequence conflict"), "{e}");
        assert_eq!(sorted_heads(&store).await, heads);
    }
    let next = seal(&mut chainer, Some("acme"), 0, 2);
    store
        .append(&[beta, next].concat(), &[])
        .await
        .expect("follows");
    // The failed appends left no transaction open on the write connection.
    let anchor = checkpoint(CheckpointKind::Retention, &first[2]);
    assert_eq!(store.purge("acme", &anchor).await.expect("purge"), 3);
}
