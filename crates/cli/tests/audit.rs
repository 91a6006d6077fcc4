//! `portcullis audit …` on real data directories: verify, export, purge, and a server killed
//! with SIGKILL under load leaves a chain that verifies and holds every acknowledged record.
#![cfg(unix)]

mod support;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use portcullis_audit::{AuditStore, Chainer, CheckpointKind, CheckpointSigner, Kind, Record};
use portcullis_sqlite::SqliteAuditStore;
use serde_json::Value;
use support::{free_port, get, run, serve, upstream, wait_for, write_config};
use time::OffsetDateTime;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Changes the audit database directly, behind the server's back: in the stored block that
/// starts at entry `first_seq` of `chain`, the first `from` becomes `to` (same length).
fn tamper(data: &Path, chain: &str, first_seq: i64, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let url = format!("sqlite://{}", data.join("audit.sqlite3").display());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        let where_ = "WHERE chain = ? AND first_seq = ?";
        let (block,): (Vec<u8>,) =
            sqlx::query_as(&format!("SELECT data FROM audit_blocks {where_}"))
                .bind(chain)
                .bind(first_seq)
                .fetch_one(&mut c)
                .await
                .expect("the block");
        let mut block = portcullis_sqlite::audit::unpack_block(&block)
            .expect("decompress")
            .into_owned();
        let at = block
            .windows(from.len())
            .position(|w| w == from.as_bytes())
            .expect("the text to change");
        block[at..at + to.len()].copy_from_slice(to.as_bytes());
        let block = portcullis_sqlite::audit::pack_block(&block).expect("compress");
        sqlx::query(&format!("UPDATE audit_blocks SET data = ? {where_}"))
            .bind(block)
            .bind(chain)
            .bind(first_seq)
            .execute(&mut c)
            .await
            .expect("tamper");
        c.close().await.expect("close");
    });
}

#[test]
fn verify_export_and_a_tampered_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let d = data.as_path();
    assert!(run(d, &["tenant", "create", "--id", "acme", "--name", "Acme"]).0);
    let (ok, created, _) = run(
        d,
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--name",
            "k1",
            "--environment",
            "live",
            "--output",
            "json",
        ],
    );
    assert!(ok);
    let created = json(&created);
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["key"]["id"].as_str().expect("id").to_owned();
    assert!(run(d, &["key", "revoke", "--tenant", "acme", &id]).0);

    let (ok, out, err) = run(d, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("intact: 1 chain(s), 3 entries verified"),
        "{out}"
    );

    let (ok, out, _) = run(d, &["audit", "export", "--tenant", "acme"]);
    assert!(ok);
    let actions: Vec<String> = out
        .lines()
        .map(|l| json(l)["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(actions, ["tenant.create", "key.create", "key.revoke"]);
    assert!(!out.contains(&secret), "an export holds a key secret");
    let first = json(out.lines().next().expect("a line"));
    assert_eq!(
        (first["seq"].as_u64(), first["actor"].as_str()),
        (Some(1), Some("operator"))
    );

    // The export itself is audited, and the CSV has a header and one row per entry.
    let (ok, csv, _) = run(
        d,
        &["audit", "export", "--tenant", "acme", "--format", "csv"],
    );
    assert!(ok);
    assert!(csv.starts_with("chain,seq,hash,prev_hash,time,kind,action,"));
    assert_eq!(csv.lines().count(), 1 + 4);
    assert!(csv.contains(",maintenance,audit.export,"));

    // Bad input is refused with a clear message.
    let (ok, _, err) = run(d, &["audit", "export", "--tenant", "Not A Tenant"]);
    assert!(!ok && err.contains("error:"), "{err}");
    let (ok, _, err) = run(
        d,
        &[
            "audit",
            "export",
            "--tenant",
            "acme",
            "--since",
            "yesterday",
        ],
    );
    assert!(
        !ok && err.contains("--since must be an RFC 3339 time"),
        "{err}"
    );

    // An edited record: verify exits 1 and names the chain and entry.
    tamper(d, "acme", 2, "\"k1\"", "\"k2\"");
    let (ok, out, _) = run(d, &["audit", "verify"]);
    assert!(!ok);
    assert!(out.contains("BROKEN: chain acme at entry 2:"), "{out}");
    let (ok, out, _) = run(d, &["audit", "verify", "--output", "json"]);
    assert!(!ok);
    let report = json(&out);
    assert_eq!(report["intact"], false);
    assert_eq!(report["break"]["seq"], 2);
    assert_eq!(report["break"]["problem"], "hash_mismatch");
    // A range before the edit still verifies on its own.
    assert!(run(d, &["audit", "verify", "--tenant", "acme", "--to", "1"]).0);
}

#[test]
fn purge_removes_entries_older_than_the_tenant_window() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = tmp.path().join("portcullis.toml");
    std::fs::write(&config, "[audit]\ntenant_retention_days = { acme = 10 }\n").expect("config");
    // Five entries 30 days old, then three from yesterday, signed with the data dir's key.
    let now = OffsetDateTime::now_utc();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let signer =
            CheckpointSigner::load_or_create(&data.join("audit-signing.key")).expect("key");
        let store = SqliteAuditStore::open(&data.join("audit.sqlite3"))
            .await
            .expect("open");
        let mut chainer = Chainer::default();
        let entries: Vec<_> = (0..8)
            .map(|i| {
                let age = if i < 5 { 30 } else { 1 };
                let mut r = Record::new(now - time::Duration::days(age), Kind::Request, "request");
                r.tenant = Some("acme".into());
                chainer.seal(&r)
            })
            .collect();
        let head = chainer.head("acme");
        let cp = signer.sign(CheckpointKind::Periodic, "acme", head.seq, head.hash, now);
        store.append(&entries, &[cp]).await.expect("append");
        store.close().await;
    });
    let cfg = config.to_str().expect("utf-8");
    let (ok, out, err) = run(
        &data,
        &["--config", cfg, "audit", "purge", "--output", "json"],
    );
    assert!(ok, "{out}{err}");
    let purged = json(&out);
    assert_eq!(purged[0]["chain"], "acme");
    assert_eq!(
        (
            purged[0]["removed"].as_u64(),
            purged[0]["through_seq"].as_u64()
        ),
        (Some(5), Some(5))
    );

    let (ok, out, _) = run(
        &data,
        &["--config", cfg, "audit", "verify", "--output", "json"],
    );
    assert!(ok, "{out}");
    let chain = &json(&out)["chains"][0];
    assert_eq!(
        (
            chain["first_seq"].as_u64(),
            chain["retention_anchor"].as_u64()
        ),
        (Some(6), Some(5))
    );
    // Three kept entries and the purge's own record.
    assert_eq!(chain["entries"], 4);
    let (_, out, _) = run(
        &data,
        &["--config", cfg, "audit", "export", "--tenant", "acme"],
    );
    let last = json(out.lines().last().expect("a line"));
    assert_eq!(last["action"], "audit.purge");
    assert_eq!(last["data"]["removed"], 5);
    // Nothing more to purge.
    let (ok, out, _) = run(
        &data,
        &["--config", cfg, "audit", "purge", "--output", "json"],
    );
    assert!(ok);
    assert_eq!(json(&out), serde_json::json!([]));
}

/// The `portcullis_audit_records_written_total` counter of the server's metrics.
fn written(admin: u16) -> Option<u64> {
    let (status, body) = get(admin, "/metrics", "");
    (status == 200).then_some(())?;
    body.lines()
        .find(|l| l.starts_with("portcullis_audit_records_written_total"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[test]
fn a_server_killed_under_load_leaves_a_verifiable_chain_with_every_acknowledged_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let config = tmp.path().join("portcullis.toml");
    let (admin, gw) = (free_port(), free_port());
    write_config(&config, admin, gw, upstream(), &[("a", "/a", "main")]);
    let mut server = serve(&config, &data);
    wait_for("the gateway", || get(gw, "/a/ready", "").0 == 200);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..4)
        .map(|t| {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if get(gw, &format!("/a/{t}/{i}"), "").0 == 200 {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    wait_for("500 proxied requests", || {
        sent.load(Ordering::Relaxed) >= 500
    });
    std::thread::sleep(Duration::from_millis(300));
    // Acknowledged: committed by the writer, as the server reports it, while load goes on.
    let acknowledged = written(admin).expect("the written-records counter");
    assert!(acknowledged > 0);
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }

    let (ok, out, err) = run(
        &data,
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "audit",
            "verify",
            "--output",
            "json",
        ],
    );
    assert!(ok, "the chain does not verify after kill -9: {out}{err}");
    let report = json(&out);
    let stored = report["entries"].as_u64().expect("entries");
    eprintln!("killed under load: {acknowledged} records acknowledged, {stored} stored");
    assert!(
        stored >= acknowledged,
        "{acknowledged} records were acknowledged, {stored} survived"
    );
    // The server starts again on the same log and continues the chains.
    let server = serve(&config, &data);
    wait_for("the restarted gateway", || get(gw, "/a/again", "").0 == 200);
    wait_for("the restarted server's records", || {
        written(admin).is_some_and(|n| n > 0)
    });
    drop(server);
    assert!(
        run(
            &data,
            &[
                "--config",
                config.to_str().expect("utf-8"),
                "audit",
                "verify"
            ]
        )
        .0
    );
}
