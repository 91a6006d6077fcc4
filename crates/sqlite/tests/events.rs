//! The events conformance suite against [`SqliteEventStore`], in memory and on a file, and what
//! only the embedded store has: events stored by another process reach the live feed.
use std::{sync::Arc, time::Duration};

use portcullis_events::{EventBackend, EventType, Scope, conformance::event};
use portcullis_sqlite::SqliteEventStore;

portcullis_events::events_conformance_tests!(in_memory, async {
    Arc::new(
        SqliteEventStore::open_in_memory()
            .await
            .expect("memory store"),
    ) as Arc<dyn EventBackend>
});

portcullis_events::events_conformance_tests!(on_file, async {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    Arc::new(
        SqliteEventStore::open(&dir.join("events.sqlite3"))
            .await
            .expect("file store"),
    ) as Arc<dyn EventBackend>
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_another_process_reach_the_live_feed_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.sqlite3");
    // Two stores on one file stand for the server and the operator CLI.
    let server = SqliteEventStore::open(&path).await.expect("server store");
    let cli = SqliteEventStore::open(&path).await.expect("cli store");
    let mut live = server.live();
    let theirs = cli
        .publish(vec![event(EventType::KeyRevoked, Some("acme"), 1)])
        .await
        .expect("cli publish");
    // The server's own publish after it: the feed must still send the CLI's first.
    let ours = server
        .publish(vec![event(EventType::KeyCreated, Some("acme"), 2)])
        .await
        .expect("server publish");
    for expected in [&theirs[0], &ours[0]] {
        let got = tokio::time::timeout(Duration::from_secs(5), live.recv())
            .await
            .expect("in time")
            .expect("open");
        assert_eq!(got.as_ref(), expected);
    }
    // And one stored by the other process alone arrives within the poll interval.
    let later = cli
        .publish(vec![event(EventType::KeyRolled, Some("acme"), 3)])
        .await
        .expect("cli publish");
    let got = tokio::time::timeout(Duration::from_secs(5), live.recv())
        .await
        .expect("polled in time")
        .expect("open");
    assert_eq!(got.as_ref(), &later[0]);
    let all = server
        .read_after(0, &Scope::global(), 10)
        .await
        .expect("read");
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn the_file_is_private_and_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.sqlite3");
    let store = SqliteEventStore::open(&path).await.expect("open");
    let stored = store
        .publish(vec![event(EventType::KeyCreated, Some("acme"), 1)])
        .await
        .expect("publish");
    store.close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only");
    }
    let again = SqliteEventStore::open(&path).await.expect("reopen");
    assert_eq!(again.last_id().await.expect("last"), stored[0].id);
    let next = again
        .publish(vec![event(EventType::KeyCreated, Some("acme"), 2)])
        .await
        .expect("publish");
    assert!(next[0].id > stored[0].id);
}
