//! Tampering with a real audit file: a log is written through [`SqliteAuditStore`], then each
//! case changes a fresh copy of the SQLite file directly, with plain SQL on a connection of its
//! own (not through the store), and `verify_store` must name the first broken point: the right
//! chain, sequence number and problem.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use portcullis_audit::{
    AuditStore, Break, ChainReport, Chainer, CheckpointKind, CheckpointSigner, Decision, Digest,
    Entry, Kind, Problem, Record, SYSTEM_CHAIN, record::entry_hash, verify_store,
};
use portcullis_sqlite::SqliteAuditStore;
use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};
use time::{OffsetDateTime, macros::datetime};

const CHAINS: [&str; 3] = [SYSTEM_CHAIN, "acme", "beta"];
const PER_CHAIN: u64 = 50;
const CHECKPOINT_EVERY: u64 = 10;

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed(&[7; 32])
}

fn when(i: u64) -> OffsetDateTime {
    datetime!(2026-05-04 10:00:00 UTC) + time::Duration::milliseconds(i64::try_from(i).unwrap())
}

/// A request record of `chain`, number `i`.
fn record(chain: &str, i: u64) -> Record {
    let mut r = Record::new(when(i), Kind::Request, "request")
        .with("method", "POST")
        .with("route", "/v1/payments")
        .with("status", 200)
        .with("latency_us", 800 + i)
        .with("client_ip", "203.0.113.9");
    r.tenant = (chain != SYSTEM_CHAIN).then(|| chain.to_owned());
    r.key_id = Some(format!("key_{}", i % 4));
    r.request_id = Some(format!("req_{chain}_{i}"));
    r.decision = Some(if i.is_multiple_of(3) {
        Decision::Deny
    } else {
        Decision::Allow
    });
    r
}

/// The written log: every chain's entries, by chain.
type Log = BTreeMap<String, Vec<Entry>>;

/// Writes the log through the store (batches of 10 with a periodic checkpoint each) into
/// `dir/original.sqlite3` and closes it, the WAL folded into the file.
async fn write_log(dir: &Path) -> (PathBuf, Log) {
    let path = dir.join("original.sqlite3");
    let store = SqliteAuditStore::open(&path).await.expect("open");
    let mut chainer = Chainer::default();
    let mut log = Log::new();
    for i in 0..PER_CHAIN {
        for chain in CHAINS {
            let e = chainer.seal(&record(chain, i));
            log.entry(chain.to_owned()).or_default().push(e);
        }
        if (i + 1).is_multiple_of(CHECKPOINT_EVERY) {
            let batch: Vec<Entry> = log
                .values()
                .flat_map(|v| &v[v.len() - 10..])
                .cloned()
                .collect();
            let cps: Vec<_> = CHAINS
                .iter()
                .map(|c| {
                    let head = chainer.head(c);
                    signer().sign(CheckpointKind::Periodic, c, head.seq, head.hash, when(i))
                })
                .collect();
            store.append(&batch, &cps).await.expect("append");
        }
    }
    store.close().await;
    (path, log)
}

/// A change made behind the store's back.
enum Change {
    Sql(String),
    /// Inserts this entry as a row.
    Insert(Entry),
}

fn sql(s: &str) -> Change {
    Change::Sql(s.to_owned())
}

/// An entry of `chain` at `seq` after `prev` with a forged body and its own hash recomputed.
fn forged(chain: &str, seq: u64, prev: Digest) -> Entry {
    let r = record(chain, seq - 1).with("status", 500);
    Entry::seal(chain, seq, prev, &r)
}

/// Copies the original, applies `changes` on a plain connection, and verifies the copy.
async fn tampered(
    dir: &Path,
    original: &Path,
    name: &str,
    changes: Vec<Change>,
) -> (SqliteAuditStore, Result<Vec<ChainReport>, Break>) {
    let path = dir.join(format!("{name}.sqlite3"));
    std::fs::copy(original, &path).expect("copy");
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
        .await
        .expect("raw connection");
    for change in changes {
        match change {
            Change::Sql(s) => {
                sqlx::raw_sql(&s).execute(&mut conn).await.expect(&s);
            }
            Change::Insert(e) => {
                let c = &e.columns;
                sqlx::query(
                    "INSERT INTO audit_entries (chain, seq, time_micros, kind, action, tenant, \
                     key_id, decision, prev_hash, hash, body) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                )
                .bind(&e.chain)
                .bind(i64::try_from(e.seq).unwrap())
                .bind(c.time_micros)
                .bind(c.kind.as_str())
                .bind(&c.action)
                .bind(&c.tenant)
                .bind(&c.key_id)
                .bind(c.decision.map(Decision::as_str))
                .bind(&e.prev_hash.0[..])
                .bind(&e.hash.0[..])
                .bind(&e.body)
                .execute(&mut conn)
                .await
                .expect("insert");
            }
        }
    }
    conn.close().await.expect("close raw connection");
    let store = SqliteAuditStore::open(&path).await.expect("open copy");
    let verdict = verify_store(&store, &signer().verifying_key(), None, None, None)
        .await
        .expect("store readable");
    (store, verdict)
}

#[tokio::test]
async fn the_intact_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, _) = write_log(dir.path()).await;
    let (_, verdict) = tampered(dir.path(), &original, "intact", vec![]).await;
    let reports = verdict.expect("intact");
    assert_eq!(
        reports.iter().map(|r| r.chain.as_str()).collect::<Vec<_>>(),
        CHAINS
    );
    for r in reports {
        assert_eq!(
            (r.first_seq, r.last_seq, r.entries),
            (1, PER_CHAIN, PER_CHAIN)
        );
        assert_eq!(
            (r.checkpoints, r.unsigned_tail, r.retention_anchor),
            (5, 0, 0)
        );
    }
}

#[tokio::test]
async fn each_tampering_is_named_at_its_first_broken_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, log) = write_log(dir.path()).await;
    let hash = |chain: &str, seq: usize| log[chain][seq - 1].hash;
    let at = |chain: &str, seq, problem| Break {
        chain: chain.to_owned(),
        seq,
        problem,
    };
    let missing = |expected, found| Problem::Missing { expected, found };
    let cases: Vec<(&str, Vec<Change>, Break)> = vec![
        (
            "edited_body",
            vec![sql(
                r#"UPDATE audit_entries SET body = replace(body, '"status":200', '"status":201') WHERE chain = 'acme' AND seq = 17"#,
            )],
            at("acme", 17, Problem::HashMismatch),
        ),
        (
            "edited_key_id",
            vec![sql(
                "UPDATE audit_entries SET key_id = 'key_forged' WHERE chain = 'beta' AND seq = 23",
            )],
            at("beta", 23, Problem::ColumnMismatch { column: "key_id" }),
        ),
        (
            "edited_decision",
            vec![sql(
                "UPDATE audit_entries SET decision = 'allow' WHERE chain = 'beta' AND seq = 31",
            )],
            at("beta", 31, Problem::ColumnMismatch { column: "decision" }),
        ),
        (
            "deleted_record",
            vec![sql(
                "DELETE FROM audit_entries WHERE chain = 'acme' AND seq = 25",
            )],
            at("acme", 25, missing(25, 26)),
        ),
        (
            "deleted_chain_start_without_anchor",
            vec![sql(
                "DELETE FROM audit_entries WHERE chain = 'acme' AND seq <= 10",
            )],
            at("acme", 1, missing(1, 11)),
        ),
        (
            "replaced_record_with_own_hash",
            vec![
                sql("DELETE FROM audit_entries WHERE chain = 'acme' AND seq = 25"),
                Change::Insert(forged("acme", 25, hash("acme", 24))),
            ],
            at("acme", 26, Problem::BrokenLink),
        ),
        (
            "inserted_record_shifting_the_rest",
            vec![
                sql("UPDATE audit_entries SET seq = seq + 1000 WHERE chain = 'acme' AND seq >= 35"),
                sql(
                    "UPDATE audit_entries SET seq = seq - 999 WHERE chain = 'acme' AND seq >= 1000",
                ),
                Change::Insert(forged("acme", 35, hash("acme", 34))),
            ],
            at("acme", 36, Problem::BrokenLink),
        ),
        (
            "appended_with_a_wrong_link",
            vec![Change::Insert(forged("acme", 51, Digest([9; 32])))],
            at("acme", 51, Problem::BrokenLink),
        ),
        (
            "swapped_seqs",
            vec![
                sql("UPDATE audit_entries SET seq = -12 WHERE chain = 'beta' AND seq = 12"),
                sql("UPDATE audit_entries SET seq = 12 WHERE chain = 'beta' AND seq = 13"),
                sql("UPDATE audit_entries SET seq = 13 WHERE chain = 'beta' AND seq = -12"),
            ],
            at("beta", 12, Problem::BrokenLink),
        ),
        (
            "swapped_bodies_and_hashes",
            vec![
                sql(
                    "CREATE TEMP TABLE swap AS SELECT seq, body, hash FROM audit_entries WHERE chain = 'acme' AND seq IN (3, 4)",
                ),
                sql("UPDATE audit_entries SET \
                     body = (SELECT body FROM swap WHERE swap.seq = 7 - audit_entries.seq), \
                     hash = (SELECT hash FROM swap WHERE swap.seq = 7 - audit_entries.seq) \
                     WHERE chain = 'acme' AND seq IN (3, 4)"),
            ],
            at("acme", 3, Problem::HashMismatch),
        ),
        (
            "truncated_after_a_checkpoint",
            vec![sql(
                "DELETE FROM audit_entries WHERE chain = 'beta' AND seq > 35",
            )],
            at("beta", 40, Problem::Truncated { last_stored: 35 }),
        ),
        (
            "forged_checkpoint",
            vec![sql(
                "UPDATE audit_checkpoints SET hash = zeroblob(32) WHERE chain = 'acme' AND seq = 20",
            )],
            at("acme", 20, Problem::BadSignature),
        ),
        (
            "unreadable_hash",
            vec![sql(
                "UPDATE audit_entries SET hash = X'0102' WHERE chain = 'acme' AND seq = 7",
            )],
            at("acme", 7, Problem::UnreadableBody),
        ),
        (
            "unknown_kind",
            vec![sql(
                "UPDATE audit_entries SET kind = 'bogus' WHERE chain = '_system' AND seq = 44",
            )],
            at(SYSTEM_CHAIN, 44, Problem::UnreadableBody),
        ),
        (
            "body_not_a_record_with_own_hash",
            vec![
                sql("DELETE FROM audit_entries WHERE chain = 'beta' AND seq = 9"),
                Change::Insert({
                    let mut e = log["beta"][8].clone();
                    e.body = "not a record".to_owned();
                    e.hash = entry_hash("beta", 9, &e.prev_hash, &e.body);
                    e
                }),
            ],
            at("beta", 9, Problem::UnreadableBody),
        ),
        (
            "first_chain_named_first",
            vec![
                sql("DELETE FROM audit_entries WHERE chain = 'beta' AND seq = 5"),
                sql("DELETE FROM audit_entries WHERE chain = 'acme' AND seq = 30"),
            ],
            at("acme", 30, missing(30, 31)),
        ),
    ];
    for (name, changes, want) in cases {
        let (_, verdict) = tampered(dir.path(), &original, name, changes).await;
        assert_eq!(verdict.err(), Some(want), "{name}");
    }
}

/// An entry appended with the right link and its own hash is indistinguishable from a real
/// one until a checkpoint signs past it: the report counts it as unsigned.
#[tokio::test]
async fn a_well_linked_append_is_reported_as_unsigned_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, log) = write_log(dir.path()).await;
    let extra = forged("acme", 51, log["acme"][49].hash);
    let (_, verdict) = tampered(dir.path(), &original, "tail", vec![Change::Insert(extra)]).await;
    let acme = verdict
        .expect("links")
        .into_iter()
        .find(|r| r.chain == "acme")
        .expect("acme");
    assert_eq!((acme.last_seq, acme.unsigned_tail), (51, 1));
}

#[tokio::test]
async fn a_retention_purge_leaves_the_rest_verifiable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, log) = write_log(dir.path()).await;
    let (store, _) = tampered(dir.path(), &original, "purged", vec![]).await;
    let anchor = signer().sign(
        CheckpointKind::Retention,
        "acme",
        20,
        log["acme"][19].hash,
        when(99),
    );
    assert_eq!(store.purge("acme", &anchor).await.expect("purge"), 20);
    let key = signer().verifying_key();
    let reports = verify_store(&store, &key, None, None, None)
        .await
        .expect("read")
        .expect("verifies");
    let acme = &reports[1];
    assert_eq!(
        (
            acme.chain.as_str(),
            acme.first_seq,
            acme.entries,
            acme.retention_anchor
        ),
        ("acme", 21, 30, 20)
    );
    store.close().await;

    // Past the anchor, a deletion is still found.
    let purged = dir.path().join("purged.sqlite3");
    let (_, verdict) = tampered(
        dir.path(),
        &purged,
        "purged-then-deleted",
        vec![sql(
            "DELETE FROM audit_entries WHERE chain = 'acme' AND seq = 21",
        )],
    )
    .await;
    let b = verdict.expect_err("gap");
    assert_eq!(
        (b.chain.as_str(), b.seq, b.problem),
        (
            "acme",
            21,
            Problem::Missing {
                expected: 21,
                found: 22
            }
        )
    );
}

#[tokio::test]
async fn a_range_is_verified_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, _) = write_log(dir.path()).await;
    let edit = "UPDATE audit_entries SET key_id = 'x' WHERE chain = 'acme' AND seq = 40";
    let (store, verdict) = tampered(dir.path(), &original, "range", vec![sql(edit)]).await;
    assert_eq!(verdict.expect_err("edited").seq, 40);
    let key = signer().verifying_key();
    let acme = ["acme".to_owned()];
    let ok = verify_store(&store, &key, Some(&acme), Some(15), Some(30))
        .await
        .expect("read");
    assert_eq!(ok.expect("range intact")[0].entries, 16);
    let b = verify_store(&store, &key, Some(&acme), Some(35), Some(45))
        .await
        .expect("read");
    assert_eq!(b.expect_err("range broken").seq, 40);
}
