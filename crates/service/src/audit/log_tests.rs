//! Tests of `log.rs`.
use portcullis_audit::{Kind, Record, verify_chain};
use portcullis_core::clock::SystemClock;
use portcullis_sqlite::SqliteAuditStore;

use super::*;

fn rec(tenant: &str, i: u64) -> Record {
    let mut r = Record::new(SystemClock.now(), Kind::Request, "request").with("i", i);
    r.tenant = Some(tenant.to_owned());
    r
}

fn config(batch_max: usize) -> AuditConfig {
    AuditConfig {
        batch_max,
        ..AuditConfig::default()
    }
}

fn start(store: &SqliteAuditStore, cfg: &AuditConfig) -> AuditLog {
    AuditLog::start(
        cfg,
        Arc::new(store.clone()),
        CheckpointSigner::from_seed(&[7; 32]),
        Arc::new(SystemClock),
        AuditMetrics::default(),
    )
}

#[tokio::test]
async fn records_are_committed_in_batches_and_flush_waits_for_them() {
    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    let log = start(&store, &config(10));
    for i in 0..25 {
        log.record(rec("acme", i));
    }
    log.flush().await.expect("flush");
    assert_eq!(log.metrics().written.get(), 25);
    let heads = store.heads().await.expect("heads");
    assert_eq!(heads.len(), 1);
    assert_eq!((heads[0].0.as_str(), heads[0].1.seq), ("acme", 25));
    let entries = store.entries("acme", 1, None, 100).await.expect("entries");
    let order: Vec<u64> = entries
        .iter()
        .map(|e| e.record().expect("record").data["i"].as_u64().expect("i"))
        .collect();
    assert_eq!(order, (0..25).collect::<Vec<_>>(), "in the order recorded");
    assert!(log.healthy() && !log.refusing());
    assert_eq!(log.queued(), 0);
}

#[tokio::test]
async fn shutdown_signs_every_chain_head() {
    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    let signer = CheckpointSigner::from_seed(&[7; 32]);
    // A chain's first batch is signed; after that, checkpoints by count or time would not
    // be due for a long while.
    let log = start(&store, &config(10));
    for i in 0..5 {
        log.record(rec("acme", i));
        log.record(rec("beta", i));
        log.flush().await.expect("flush");
    }
    let signed = store.checkpoints("acme").await.expect("cps");
    assert_eq!(signed.iter().map(|c| c.seq).collect::<Vec<_>>(), [1]);
    log.shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    for chain in ["acme", "beta"] {
        let report = verify_chain(&store, &signer.verifying_key(), chain, None, None)
            .await
            .expect("read")
            .expect("verifies");
        assert_eq!((report.last_seq, report.unsigned_tail), (5, 0), "{chain}");
    }
}

#[tokio::test]
async fn two_writers_on_one_store_reseal_instead_of_forking_the_chain() {
    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    let signer = CheckpointSigner::from_seed(&[7; 32]);
    let a = start(&store, &config(4));
    let b = start(&store, &config(4));
    for i in 0..6 {
        let log = if i % 2 == 0 { &a } else { &b };
        log.record(rec("acme", i));
        log.record(rec("acme", 100 + i));
        log.flush().await.expect("flush");
    }
    let head = store.heads().await.expect("heads")[0].1;
    assert_eq!(head.seq, 12, "nothing lost, nothing doubled");
    let report = verify_chain(&store, &signer.verifying_key(), "acme", None, None)
        .await
        .expect("read")
        .expect("the chain verifies");
    assert_eq!(report.entries, 12);
    assert!(a.healthy() && b.healthy());
}

#[tokio::test]
async fn a_restarted_writer_does_not_sign_a_signed_head_again() {
    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    let cfg = AuditConfig {
        checkpoint_every_records: 1,
        checkpoint_every_seconds: 1,
        ..AuditConfig::default()
    };
    let first = start(&store, &cfg);
    for i in 0..3 {
        first.record(rec("acme", i));
    }
    first
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    let signed = store.checkpoints("acme").await.expect("checkpoints");
    assert_eq!(signed.last().map(|c| c.seq), Some(3), "the head is signed");
    // The next writer idles past a checkpoint interval, then records.
    let second = start(&store, &cfg);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    second.record(rec("acme", 3));
    second
        .flush_within(Duration::from_secs(10))
        .await
        .expect("written");
    assert!(second.healthy());
    assert_eq!(second.metrics().write_failures.get(), 0);
    assert_eq!(store.heads().await.expect("heads")[0].1.seq, 4);
}

#[tokio::test]
async fn a_disabled_log_discards_and_a_stopped_one_counts_drops() {
    let off = AuditLog::disabled();
    off.record(rec("acme", 1));
    assert!(off.flush().await.is_ok());
    assert!(!off.enabled() && !off.refusing() && off.store().is_none());

    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    let log = start(&store, &config(10));
    log.record(rec("acme", 1));
    log.shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    assert_eq!(log.metrics().written.get(), 1, "flushed at shutdown");
    log.record(rec("acme", 2));
    assert_eq!(log.metrics().dropped.get(), 1);
    assert!(matches!(log.flush().await, Err(AuditError::Stopped)));
}

#[tokio::test]
async fn fail_closed_reserves_a_place_for_every_admitted_request() {
    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    let cfg = AuditConfig {
        queue_capacity: 2,
        ..AuditConfig::default()
    };
    let log = start(&store, &cfg);
    // Admitted while there is room; then other records fill the queue (the writer has not
    // run yet on this single-threaded runtime): the admitted request's record still fits.
    let place = log.admit().await.expect("admitted");
    log.record(rec("acme", 0));
    log.record(rec("acme", 1));
    assert_eq!(
        log.metrics().dropped.get(),
        1,
        "the reserved place is taken"
    );
    log.record_in(place, rec("acme", 2));
    assert_eq!(
        log.metrics().dropped.get(),
        1,
        "the admitted request is recorded"
    );
    // A full queue makes the next request wait for the writer, not fail.
    let next = log
        .admit()
        .await
        .expect("admitted once the writer drained the queue");
    log.record_in(next, rec("acme", 3));
    log.flush().await.expect("flush");
    assert_eq!(log.metrics().written.get(), 3);

    // Best effort reserves nothing and admits at once.
    let cfg = AuditConfig {
        mode: AuditMode::BestEffort,
        ..cfg
    };
    let other = start(
        &SqliteAuditStore::open_in_memory().await.expect("store"),
        &cfg,
    );
    assert!(other.admit().await.expect("admitted").0.is_none());
}

#[tokio::test]
async fn a_full_queue_refuses_in_fail_closed_mode_only() {
    let store = SqliteAuditStore::open_in_memory().await.expect("store");
    for (mode, refuses) in [
        (AuditMode::FailClosed, true),
        (AuditMode::BestEffort, false),
    ] {
        let cfg = AuditConfig {
            mode,
            queue_capacity: 2,
            ..AuditConfig::default()
        };
        let log = start(&store, &cfg);
        // The writer has not run yet on this single-threaded runtime: the queue fills.
        for i in 0..5 {
            log.record(rec("acme", i));
        }
        assert_eq!(log.refusing(), refuses, "{mode:?}");
        assert_eq!(log.metrics().dropped.get(), 3);
        log.flush().await.expect("flush");
        assert!(!log.refusing());
    }
}
