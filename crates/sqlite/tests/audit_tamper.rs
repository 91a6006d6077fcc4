//! Tampering with a real audit file in blocks: a log is written through
//! [`SqliteAuditStore`], then each case changes a fresh copy of the SQLite file directly —
//! plain SQL, or a block read, its bytes edited in Rust and written back, on a connection of its
//! own (not through the store) — and `verify_store` must name the first broken point: the right
//! chain, sequence number and problem.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use portcullis_audit::{
    AuditStore, Break, ChainReport, Chainer, CheckpointKind, CheckpointSigner, Decision, Digest,
    Entry, Kind, Problem, Record, SYSTEM_CHAIN, record::entry_hash, verify_store,
};
use portcullis_sqlite::{
    SqliteAuditStore,
    audit::{pack_block, unpack_block},
};
use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};
use time::{OffsetDateTime, macros::datetime};

const CHAINS: [&str; 3] = [SYSTEM_CHAIN, "acme", "beta"];
const PER_CHAIN: u64 = 50;
/// Entries per append, and so per block: the blocks of a chain start at 1, 11, 21, 31, 41.
const BATCH: u64 = 10;

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

/// Writes the log through the store (appends of [`BATCH`] entries of every chain with a
/// periodic checkpoint each) into `dir/original.sqlite3` and closes it.
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
        if (i + 1).is_multiple_of(BATCH) {
            let n = BATCH as usize;
            let batch: Vec<Entry> = log
                .values()
                .flat_map(|v| &v[v.len() - n..])
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

/// An entry as a block stores it (the test's own reading of the layout: a version byte, then
/// per entry seq u64 BE, prev_hash, hash, body length u32 BE, body).
#[derive(Debug, Clone)]
struct Stored {
    seq: u64,
    prev: [u8; 32],
    hash: [u8; 32],
    body: Vec<u8>,
}

impl From<&Entry> for Stored {
    fn from(e: &Entry) -> Self {
        Self {
            seq: e.seq,
            prev: e.prev_hash.0,
            hash: e.hash.0,
            body: e.body.clone(),
        }
    }
}

fn decode(data: &[u8]) -> Vec<Stored> {
    assert_eq!(data[0], 2, "appends write compressed blocks");
    let data = unpack_block(data).expect("a stored block decompresses");
    assert_eq!(data[0], 1, "plain layout");
    let mut out = Vec::new();
    let mut rest = &data[1..];
    while !rest.is_empty() {
        let (head, tail) = rest.split_at(76);
        let len = u32::from_be_bytes(head[72..76].try_into().unwrap()) as usize;
        out.push(Stored {
            seq: u64::from_be_bytes(head[..8].try_into().unwrap()),
            prev: head[8..40].try_into().unwrap(),
            hash: head[40..72].try_into().unwrap(),
            body: tail[..len].to_vec(),
        });
        rest = &tail[len..];
    }
    out
}

fn encode(entries: &[Stored]) -> Vec<u8> {
    let mut data = vec![1];
    for e in entries {
        data.extend_from_slice(&e.seq.to_be_bytes());
        data.extend_from_slice(&e.prev);
        data.extend_from_slice(&e.hash);
        data.extend_from_slice(&u32::try_from(e.body.len()).unwrap().to_be_bytes());
        data.extend_from_slice(&e.body);
    }
    pack_block(&data).expect("compress")
}

type Edit = Box<dyn FnOnce(&mut Vec<Stored>)>;

/// A change made behind the store's back.
enum Change {
    Sql(String),
    /// Rewrites the entries of the block of this chain starting at this seq (its last_seq
    /// follows the edit, as a careful forger would have it).
    Block(&'static str, u64, Edit),
    /// Stores the block of this chain starting at this seq in the plain layout, changed by the
    /// function.
    Plain(&'static str, u64, fn(&mut Vec<u8>)),
}

fn sql(s: &str) -> Change {
    Change::Sql(s.to_owned())
}

fn block(
    chain: &'static str,
    first_seq: u64,
    edit: impl FnOnce(&mut Vec<Stored>) + 'static,
) -> Change {
    Change::Block(chain, first_seq, Box::new(edit))
}

/// The position of entry `seq` in a block starting at `first`.
fn pos(first: u64, seq: u64) -> usize {
    usize::try_from(seq - first).unwrap()
}

/// An entry of `chain` at `seq` after `prev` with a forged body and its own hash recomputed.
fn forged(chain: &str, seq: u64, prev: Digest) -> Stored {
    let r = record(chain, seq - 1).with("status", 500);
    Stored::from(&Entry::seal(chain, seq, prev, &r))
}

/// Replaces the data of the block of `chain` starting at `first` with what `edit` makes of it,
/// and its `last_seq` with the one `edit` gives, if any.
async fn rewrite(
    conn: &mut SqliteConnection,
    chain: &str,
    first: u64,
    edit: impl FnOnce(&[u8]) -> (Vec<u8>, Option<u64>),
) {
    let first = i64::try_from(first).unwrap();
    let data: Vec<u8> =
        sqlx::query_scalar("SELECT data FROM audit_blocks WHERE chain = ? AND first_seq = ?")
            .bind(chain)
            .bind(first)
            .fetch_one(&mut *conn)
            .await
            .expect("block");
    let (data, last) = edit(&data);
    sqlx::query(
        "UPDATE audit_blocks SET data = ?, last_seq = coalesce(?, last_seq) \
         WHERE chain = ? AND first_seq = ?",
    )
    .bind(data)
    .bind(last.map(|l| i64::try_from(l).unwrap()))
    .bind(chain)
    .bind(first)
    .execute(&mut *conn)
    .await
    .expect("rewrite block");
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
            Change::Plain(chain, first, edit) => {
                rewrite(&mut conn, chain, first, |data| {
                    let mut plain = unpack_block(data).expect("decompress").into_owned();
                    edit(&mut plain);
                    (plain, None)
                })
                .await;
            }
            Change::Block(chain, first, edit) => {
                rewrite(&mut conn, chain, first, |data| {
                    let mut entries = decode(data);
                    edit(&mut entries);
                    let last = entries.iter().map(|e| e.seq).max().unwrap();
                    (encode(&entries), Some(last))
                })
                .await;
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
    let (h24, h34, h44) = (hash("acme", 24), hash("acme", 34), hash("acme", 44));
    let beta9 = Stored::from(&log["beta"][8]);
    let cases: Vec<(&str, Vec<Change>, Break)> = vec![
        (
            "edited_body",
            vec![block("acme", 11, |b| {
                let mut r = Record::from_body(&b[pos(11, 17)].body).unwrap();
                assert_eq!(r.data["status"], 200);
                r.data.insert("status".into(), 201.into());
                b[pos(11, 17)].body = r.to_body();
            })],
            at("acme", 17, Problem::HashMismatch),
        ),
        (
            "deleted_entry_in_a_block",
            vec![block("acme", 21, |b| {
                b.remove(pos(21, 25));
            })],
            at("acme", 25, missing(25, 26)),
        ),
        (
            "deleted_block",
            vec![sql(
                "DELETE FROM audit_blocks WHERE chain = 'acme' AND first_seq = 21",
            )],
            at("acme", 21, missing(21, 31)),
        ),
        (
            "deleted_chain_start_without_anchor",
            vec![sql(
                "DELETE FROM audit_blocks WHERE chain = 'acme' AND first_seq = 1",
            )],
            at("acme", 1, missing(1, 11)),
        ),
        (
            "replaced_entry_with_own_hash",
            vec![block("acme", 21, move |b| {
                b[pos(21, 25)] = forged("acme", 25, h24);
            })],
            at("acme", 26, Problem::BrokenLink),
        ),
        (
            "inserted_entry",
            vec![block("acme", 31, move |b| {
                b.insert(pos(31, 35), forged("acme", 35, h34));
            })],
            at(
                "acme",
                35,
                Problem::OutOfOrder {
                    expected: 36,
                    found: 35,
                },
            ),
        ),
        (
            "inserted_entry_shifting_the_rest",
            vec![block("acme", 41, move |b| {
                for e in &mut b[pos(41, 45)..] {
                    e.seq += 1;
                }
                b.insert(pos(41, 45), forged("acme", 45, h44));
            })],
            at("acme", 46, Problem::BrokenLink),
        ),
        (
            "appended_block_with_a_wrong_link",
            vec![block("acme", 41, |b| {
                b.push(forged("acme", 51, Digest([9; 32])))
            })],
            at("acme", 51, Problem::BrokenLink),
        ),
        (
            "swapped_entries",
            vec![block("beta", 11, |b| b.swap(pos(11, 12), pos(11, 13)))],
            at("beta", 12, missing(12, 13)),
        ),
        (
            "swapped_entries_renumbered",
            vec![block("beta", 11, |b| {
                b.swap(pos(11, 12), pos(11, 13));
                (b[pos(11, 12)].seq, b[pos(11, 13)].seq) = (12, 13);
            })],
            at("beta", 12, Problem::BrokenLink),
        ),
        (
            "truncated_after_a_checkpoint",
            vec![sql(
                "DELETE FROM audit_blocks WHERE chain = 'beta' AND first_seq > 30",
            )],
            at("beta", 40, Problem::Truncated { last_stored: 30 }),
        ),
        (
            "truncated_inside_a_block",
            vec![
                sql("DELETE FROM audit_blocks WHERE chain = 'beta' AND first_seq > 31"),
                block("beta", 31, |b| b.truncate(5)),
            ],
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
            // A compressed block cut short decompresses to nothing: its first entry is the
            // first broken point.
            "blob_cut_inside_a_body",
            vec![sql(
                "UPDATE audit_blocks SET data = substr(data, 1, length(data) - 100) \
                 WHERE chain = 'acme' AND first_seq = 21",
            )],
            at("acme", 21, Problem::UnreadableBody),
        ),
        (
            "plain_blob_cut_inside_a_body",
            vec![Change::Plain("acme", 21, |data| {
                data.truncate(data.len() - 100)
            })],
            at("acme", 30, Problem::UnreadableBody),
        ),
        (
            "blob_cut_inside_the_first_header",
            vec![sql("UPDATE audit_blocks SET data = substr(data, 1, 40) \
                 WHERE chain = '_system' AND first_seq = 41")],
            at(SYSTEM_CHAIN, 41, Problem::UnreadableBody),
        ),
        (
            "blob_of_an_unknown_layout",
            vec![sql(
                "UPDATE audit_blocks SET data = CAST(X'07' || substr(data, 2) AS BLOB) \
                 WHERE chain = 'beta' AND first_seq = 11",
            )],
            at("beta", 11, Problem::UnreadableBody),
        ),
        (
            "body_not_a_record_with_own_hash",
            vec![block("beta", 1, move |b| {
                let mut e = beta9;
                e.body = b"not a record".to_vec();
                e.hash = entry_hash("beta", 9, &Digest(e.prev), b"not a record").0;
                b[pos(1, 9)] = e;
            })],
            at("beta", 9, Problem::UnreadableBody),
        ),
        (
            "first_chain_named_first",
            vec![
                block("beta", 1, |b| {
                    b.remove(pos(1, 5));
                }),
                block("acme", 21, |b| {
                    b.remove(pos(21, 30));
                }),
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
    let change = block("acme", 41, move |b| b.push(extra));
    let (_, verdict) = tampered(dir.path(), &original, "tail", vec![change]).await;
    let acme = verdict
        .expect("links")
        .into_iter()
        .find(|r| r.chain == "acme")
        .expect("acme");
    assert_eq!((acme.last_seq, acme.unsigned_tail), (51, 1));
}

#[tokio::test]
async fn a_retention_purge_inside_a_block_leaves_the_rest_verifiable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, log) = write_log(dir.path()).await;
    let (store, verdict) = tampered(dir.path(), &original, "purged", vec![]).await;
    verdict.expect("intact before the purge");
    let anchor = signer().sign(
        CheckpointKind::Retention,
        "acme",
        25,
        log["acme"][24].hash,
        when(99),
    );
    assert_eq!(store.purge("acme", &anchor).await.expect("purge"), 25);
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
        ("acme", 26, 25, 25)
    );
    store.close().await;
    let purged = dir.path().join("purged.sqlite3");

    // Past the anchor, a deletion is still found: the cut block now starts at 26.
    let (_, verdict) = tampered(
        dir.path(),
        &purged,
        "purged-then-deleted",
        vec![block("acme", 26, |b| {
            b.remove(0);
        })],
    )
    .await;
    let b = verdict.expect_err("gap");
    assert_eq!(
        (b.chain.as_str(), b.seq, b.problem),
        (
            "acme",
            26,
            Problem::Missing {
                expected: 26,
                found: 27
            }
        )
    );
}

#[tokio::test]
async fn a_range_is_verified_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, _) = write_log(dir.path()).await;
    // A plain block cut short: the entries before the cut still verify.
    let cut = Change::Plain("acme", 31, |data| data.truncate(data.len() - 100));
    let (store, verdict) = tampered(dir.path(), &original, "range", vec![cut]).await;
    assert_eq!(verdict.expect_err("cut").seq, 40);
    let key = signer().verifying_key();
    let acme = ["acme".to_owned()];
    let ok = verify_store(&store, &key, Some(&acme), Some(15), Some(30))
        .await
        .expect("read");
    assert_eq!(ok.expect("range intact")[0].entries, 16);
    let inside = verify_store(&store, &key, Some(&acme), Some(32), Some(38))
        .await
        .expect("read");
    assert_eq!(inside.expect("before the cut")[0].entries, 7);
    let b = verify_store(&store, &key, Some(&acme), Some(35), Some(45))
        .await
        .expect("read");
    assert_eq!(
        b.expect_err("range broken"),
        Break {
            chain: "acme".into(),
            seq: 40,
            problem: Problem::UnreadableBody
        }
    );
}
