//! Retention purges and exports on a real audit file: a purge removes a whole range from a
//! chain's start under a signed retention checkpoint and leaves the rest verifiable; a broken
//! chain is never purged; exports stream every matching entry as NDJSON or CSV.
use portcullis_audit::{
    AuditFilter, AuditStore, Chainer, CheckpointKind, CheckpointSigner, Decision, Kind, Problem,
    Record,
    export::{Format, export},
    record::micros,
    retention::{PurgeError, purge_chain},
    verify_store,
};
use portcullis_sqlite::SqliteAuditStore;
use time::{Duration, OffsetDateTime, macros::datetime};

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed(&[9; 32])
}

/// `n` records per chain for acme and beta, record `i` on day `i`, a periodic checkpoint every
/// 5 entries of each chain.
async fn log(store: &SqliteAuditStore, n: i64) {
    let mut chainer = Chainer::default();
    for i in 0..n {
        let mut entries = Vec::new();
        let mut cps = Vec::new();
        for tenant in ["acme", "beta"] {
            let mut r = Record::new(T0 + Duration::days(i), Kind::Request, "gateway.request")
                .with("status", if i % 2 == 0 { 200 } else { 403 })
                .with("note", "a, \"quoted\"\nline");
            r.tenant = Some(tenant.into());
            r.key_id = Some(format!("key_{}", i % 3));
            r.decision = Some(if i % 2 == 0 {
                Decision::Allow
            } else {
                Decision::Deny
            });
            let e = chainer.seal(&r);
            if e.seq % 5 == 0 {
                cps.push(signer().sign(CheckpointKind::Periodic, tenant, e.seq, e.hash, r.time));
            }
            entries.push(e);
        }
        store.append(&entries, &cps).await.unwrap();
    }
}

#[tokio::test]
async fn purge_removes_the_old_range_and_the_rest_verifies() {
    let store = SqliteAuditStore::open_in_memory().await.unwrap();
    log(&store, 30).await;
    let key = signer().verifying_key();
    // Keep days 12.. of acme: entries 1..=12 (days 0..=11) go.
    let cutoff = T0 + Duration::days(12);
    let purged = purge_chain(&store, &signer(), "acme", cutoff, T0 + Duration::days(40))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((purged.removed, purged.through_seq), (12, 12));
    let first = store.entries("acme", 0, None, 1).await.unwrap();
    assert_eq!(first[0].seq, 13);
    // beta is untouched; both verify.
    assert_eq!(store.entries("beta", 0, None, 100).await.unwrap().len(), 30);
    let reports = verify_store(&store, &key, None, None, None)
        .await
        .unwrap()
        .unwrap();
    let acme = reports.iter().find(|r| r.chain == "acme").unwrap();
    assert_eq!(
        (acme.first_seq, acme.retention_anchor, acme.entries),
        (13, 12, 18)
    );
    // Purging again with the same window removes nothing.
    assert!(
        purge_chain(&store, &signer(), "acme", cutoff, T0 + Duration::days(40))
            .await
            .unwrap()
            .is_none()
    );
    // A window past every entry keeps the last one, so numbering continues.
    let all = purge_chain(&store, &signer(), "acme", T0 + Duration::days(99), T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((all.removed, all.through_seq), (17, 29));
    assert_eq!(store.heads().await.unwrap().len(), 2);
    assert!(
        verify_store(&store, &key, None, None, None)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn after_a_key_rotation_the_old_keys_checkpoints_still_allow_a_purge() {
    let store = SqliteAuditStore::open_in_memory().await.unwrap();
    log(&store, 30).await;
    let new = CheckpointSigner::from_seed(&[10; 32]);
    assert!(
        store
            .add_signing_key(&signer().root_link(T0))
            .await
            .unwrap()
    );
    let hand_over = signer().hand_over(2, &new.verifying_key(), T0 + Duration::days(31));
    assert!(store.add_signing_key(&hand_over).await.unwrap());
    // The new key purges a range signed by the old one, and the result verifies with the chain.
    let purged = purge_chain(&store, &new, "acme", T0 + Duration::days(12), T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(purged.through_seq, 12);
    let keys = portcullis_audit::KeyChain::load(&store)
        .await
        .unwrap()
        .unwrap();
    assert!(
        verify_store(&store, &keys, None, None, None)
            .await
            .unwrap()
            .is_ok()
    );
    // With only the new key, the old checkpoints do not verify.
    assert!(
        verify_store(&store, &new.verifying_key(), None, None, None)
            .await
            .unwrap()
            .is_err()
    );
}

#[tokio::test]
async fn a_broken_range_is_not_purged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sqlite3");
    let store = SqliteAuditStore::open(&path).await.unwrap();
    log(&store, 10).await;
    store.close().await;
    {
        use sqlx::{Connection, SqliteConnection};
        let mut c = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        // Entry 4 of acme is the only entry of its block (one append per record here): its
        // status 403 becomes 200 in the stored bytes.
        let (data,): (Vec<u8>,) =
            sqlx::query_as("SELECT data FROM audit_blocks WHERE chain = 'acme' AND first_seq = 4")
                .fetch_one(&mut c)
                .await
                .unwrap();
        let mut edited = portcullis_sqlite::audit::unpack_block(&data)
            .unwrap()
            .into_owned();
        // In the binary body: the unsigned tag, the name `status` (index 3 of the table), then
        // 403 and 200 as LEB128.
        let at = edited
            .windows(4)
            .position(|w| w == [3, 0x83, 0x93, 0x03])
            .unwrap();
        edited[at + 2..at + 4].copy_from_slice(&[0xC8, 0x01]);
        let edited = portcullis_sqlite::audit::pack_block(&edited).unwrap();
        sqlx::query("UPDATE audit_blocks SET data = ? WHERE chain = 'acme' AND first_seq = 4")
            .bind(edited)
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let store = SqliteAuditStore::open(&path).await.unwrap();
    let err = purge_chain(&store, &signer(), "acme", T0 + Duration::days(8), T0)
        .await
        .unwrap_err();
    let PurgeError::Broken(b) = err else {
        panic!("expected a broken chain, got {err:?}")
    };
    assert_eq!((b.seq, b.problem), (4, Problem::HashMismatch));
    assert_eq!(store.entries("acme", 0, None, 100).await.unwrap().len(), 10);
}

#[tokio::test]
async fn exports_stream_every_matching_entry() {
    let store = SqliteAuditStore::open_in_memory().await.unwrap();
    log(&store, 2_500).await;
    // All of acme, in pages: NDJSON lines that carry the chain position and the record.
    let mut out = Vec::new();
    let n = export(
        &store,
        "acme",
        &AuditFilter::default(),
        Format::Ndjson,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(n, 2_500);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2_500);
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[2_499]["seq"], 2_500);
    assert_eq!(lines[7]["tenant"], "acme");
    assert_eq!(lines[7]["data"]["status"], 403);
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
    // A filtered CSV: denied requests of key_1 in days [10, 100).
    let filter = AuditFilter {
        since_micros: Some(micros(T0 + Duration::days(10))),
        until_micros: Some(micros(T0 + Duration::days(100))),
        key_id: Some("key_1".into()),
        decision: Some(Decision::Deny),
        ..AuditFilter::default()
    };
    let mut out = Vec::new();
    let n = export(&store, "acme", &filter, Format::Csv, &mut out)
        .await
        .unwrap();
    let expected = (10..100).filter(|i| i % 3 == 1 && i % 2 == 1).count() as u64;
    assert_eq!(n, expected);
    let mut reader = csv::Reader::from_reader(out.as_slice());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[1], "seq");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as u64, expected);
    for row in &rows {
        assert_eq!((&row[9], &row[11]), ("key_1", "deny"));
        let data: serde_json::Value = serde_json::from_str(&row[13]).unwrap();
        assert_eq!(data["note"], "a, \"quoted\"\nline");
    }
}

#[tokio::test]
async fn used_bytes_grow_with_appends_and_shrink_with_a_purge() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteAuditStore::open(&dir.path().join("audit.sqlite3"))
        .await
        .unwrap();
    let empty = store.used_bytes().await.unwrap().expect("measured");
    assert!(empty > 0, "the schema takes pages");
    log(&store, 400).await;
    let full = store.used_bytes().await.unwrap().expect("measured");
    assert!(full > empty + 16 * 1024, "{empty} -> {full}");
    for chain in ["acme", "beta"] {
        purge_chain(&store, &signer(), chain, T0 + Duration::days(999), T0)
            .await
            .unwrap()
            .unwrap();
    }
    // The freed pages stay in the file for reuse, but are no longer counted.
    let purged = store.used_bytes().await.unwrap().expect("measured");
    assert!(purged < full / 2, "{full} -> {purged}");
}

/// A log written before records were binary keeps its JSON bodies: the same store, once
/// upgraded, appends binary records after them, and the chain verifies across the change,
/// reads back and exports.
#[tokio::test]
async fn a_log_of_json_bodies_continues_with_binary_ones_and_verifies_across_both() {
    use portcullis_audit::{Digest, Entry, Head, record::entry_hash};
    let store = SqliteAuditStore::open_in_memory().await.unwrap();
    let record = |i: i64| {
        let mut r = Record::new(T0 + Duration::minutes(i), Kind::Request, "request")
            .with("i", i)
            .with("client_ip", "203.0.113.7");
        r.tenant = Some("acme".into());
        r.decision = Some(Decision::Allow);
        r
    };
    // Entries 1..=5 as the earlier writer sealed them: the record's JSON is the body.
    let mut prev = Digest::ZERO;
    let mut old = Vec::new();
    for seq in 1..=5u64 {
        let r = record(i64::try_from(seq).unwrap());
        let body = serde_json::to_vec(&r).unwrap();
        let hash = entry_hash("acme", seq, &prev, &body);
        old.push(Entry {
            chain: "acme".into(),
            seq,
            prev_hash: prev,
            hash,
            time_micros: micros(r.time),
            body,
        });
        prev = hash;
    }
    store.append(&old, &[]).await.unwrap();
    // Then the binary writer continues the chain from the stored head.
    let mut chainer = Chainer::new([("acme".to_owned(), Head { seq: 5, hash: prev })]);
    let new: Vec<_> = (6..=10).map(|i| chainer.seal(&record(i))).collect();
    assert!(
        new.iter()
            .all(|e| e.body[0] == portcullis_audit::body::BINARY)
    );
    let cp = signer().sign(CheckpointKind::Periodic, "acme", 10, new[4].hash, T0);
    store.append(&new, &[cp]).await.unwrap();

    let key = signer().verifying_key();
    let reports = verify_store(&store, &key, None, None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((reports[0].entries, reports[0].checkpoints), (10, 1));
    let stored = store.entries("acme", 0, None, 100).await.unwrap();
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(e.record().unwrap(), record(i64::try_from(i).unwrap() + 1));
    }
    let mut out = Vec::new();
    let n = export(
        &store,
        "acme",
        &AuditFilter::default(),
        Format::Ndjson,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(n, 10);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches(r#""client_ip":"203.0.113.7""#).count(), 10);
}
