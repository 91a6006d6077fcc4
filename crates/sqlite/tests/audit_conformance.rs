//! The audit conformance suite against SQLite, in memory and on a file, and what only a file
//! has: reopening it.
use std::{path::PathBuf, sync::Arc};

use portcullis_audit::{
    AuditStore, Chainer,
    conformance::{all_entries, sorted_heads, stored},
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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portcullis-audit-conformance");
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
