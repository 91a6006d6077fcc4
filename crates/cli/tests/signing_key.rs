//! The audit signing key cannot be silently replaced: a server whose key file was replaced or
//! deleted refuses to start, `audit rotate-signing-key` hands over with a signature that
//! `audit verify` follows, a forged hand-over is named, and `--public-key` checks the log's first
//! key against an out-of-band copy.
#![cfg(unix)]

mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use portcullis_audit::CheckpointSigner;
use serde_json::Value;
use support::{free_port, run, serve, upstream, write_config};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A data directory whose audit log has signed checkpoints (each CLI change signs the chain
/// heads when it closes the log).
fn data_dir_with_a_signed_log(tmp: &Path) -> std::path::PathBuf {
    let data = tmp.join("data");
    let (ok, _, err) = run(
        &data,
        &["tenant", "create", "--id", "acme", "--name", "Acme"],
    );
    assert!(ok, "{err}");
    data
}

/// Writes `signer` as the key file (mode 0600), replacing what is there.
fn replace_key(data: &Path, signer: &CheckpointSigner) {
    let path = data.join("audit-signing.key");
    std::fs::remove_file(&path).expect("remove the key file");
    signer.write_new(&path).expect("write the key file");
}

/// Starts `serve` and expects it to exit with an error within 10 s: its stderr.
fn serve_refused(tmp: &Path, data: &Path) -> String {
    let config = tmp.join("portcullis.toml");
    write_config(&config, free_port(), free_port(), upstream(), &[]);
    let mut server = serve(&config, data);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            assert!(!status.success(), "serve exited successfully");
            // Give the stderr reader a moment to collect the last lines.
            std::thread::sleep(Duration::from_millis(100));
            return server.log.lock().expect("lock").clone();
        }
        assert!(Instant::now() < deadline, "serve started with a wrong key");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn root_public_key(data: &Path) -> String {
    let (ok, out, err) = run(data, &["--output", "json", "audit", "public-key"]);
    assert!(ok, "{err}");
    json(&out)["root_public_key"]
        .as_str()
        .expect("root_public_key")
        .to_owned()
}

#[test]
fn a_replaced_signing_key_is_refused_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_dir_with_a_signed_log(tmp.path());
    let before = std::fs::read_to_string(data.join("audit-signing.key")).expect("key");
    replace_key(&data, &CheckpointSigner::from_seed(&[7; 32]));
    let err = serve_refused(tmp.path(), &data);
    assert!(err.contains("audit-signing.key"), "{err}");
    assert!(err.contains("is signed by key sha256:"), "{err}");
    assert!(err.contains("rotate-signing-key"), "{err}");
    // Putting the right key back is enough.
    std::fs::remove_file(data.join("audit-signing.key")).expect("remove");
    std::fs::write(data.join("audit-signing.key"), before).expect("restore");
    use std::os::unix::fs::PermissionsExt;
    let private = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(data.join("audit-signing.key"), private).expect("chmod");
    let (ok, _, err) = run(&data, &["tenant", "create", "--id", "beta", "--name", "B"]);
    assert!(ok, "{err}");
}

#[test]
fn a_deleted_signing_key_is_refused_at_start_and_not_recreated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_dir_with_a_signed_log(tmp.path());
    std::fs::remove_file(data.join("audit-signing.key")).expect("remove");
    let err = serve_refused(tmp.path(), &data);
    assert!(err.contains("is missing"), "{err}");
    assert!(err.contains("Restore that key file"), "{err}");
    assert!(
        !data.join("audit-signing.key").exists(),
        "a new key was created"
    );
}

#[test]
fn rotation_is_a_signed_hand_over_that_verify_follows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_dir_with_a_signed_log(tmp.path());
    let root = root_public_key(&data);
    let (ok, out, err) = run(&data, &["--output", "json", "audit", "rotate-signing-key"]);
    assert!(ok, "{err}");
    let rotated = json(&out);
    let (old, new) = (
        rotated["previous"].as_str().expect("previous").to_owned(),
        rotated["current"].as_str().expect("current").to_owned(),
    );
    assert_ne!(old, new);
    assert!(!data.join("audit-signing.key.new").exists());
    // The new key signs from now on.
    let (ok, _, err) = run(&data, &["tenant", "create", "--id", "beta", "--name", "B"]);
    assert!(ok, "{err}");
    assert_eq!(root_public_key(&data), root, "the root key stays the same");

    let (ok, out, err) = run(&data, &["audit", "verify", "--public-key", &root]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("trusted signing key 1: {old} root key")),
        "{out}"
    );
    assert!(
        out.contains(&format!("trusted signing key 2: {new} handed over at")),
        "{out}"
    );
    assert!(out.contains("intact"), "{out}");

    // The out-of-band copy may be a file.
    let file = tmp.path().join("root.pub");
    std::fs::write(&file, format!("{root}\n")).expect("write");
    let (ok, out, err) = run(
        &data,
        &[
            "--output",
            "json",
            "audit",
            "verify",
            "--public-key",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    let v = json(&out);
    assert_eq!(v["signing_keys"]["root_checked"], true);
    assert_eq!(v["signing_keys"]["keys"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_forged_hand_over_is_named_by_verify_and_refused_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_dir_with_a_signed_log(tmp.path());
    // An attacker without the key adds a link to a key of their own, signed by that key.
    let evil = CheckpointSigner::from_seed(&[66; 32]);
    let link = evil.hand_over(2, &evil.verifying_key(), time::OffsetDateTime::now_utc());
    let url = format!("sqlite://{}", data.join("audit.sqlite3").display());
    tokio::runtime::Runtime::new().expect("rt").block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::query("INSERT INTO audit_signing_keys VALUES (?, ?, ?, ?)")
            .bind(2_i64)
            .bind(&link.public_key[..])
            .bind(link.time.unix_timestamp_nanos() as i64)
            .bind(&link.signature[..])
            .execute(&mut c)
            .await
            .expect("insert");
        c.close().await.expect("close");
    });
    replace_key(&data, &evil);
    let (ok, out, _) = run(&data, &["audit", "verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("BROKEN: signing keys at link 2"), "{out}");
    assert!(out.contains("not signed by the key before it"), "{out}");
    let err = serve_refused(tmp.path(), &data);
    assert!(err.contains("chain of audit signing keys"), "{err}");
}

#[test]
fn verify_with_a_wrong_public_key_fails() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_dir_with_a_signed_log(tmp.path());
    let wrong = CheckpointSigner::from_seed(&[5; 32]).public_key_hex();
    let (ok, out, _) = run(&data, &["audit", "verify", "--public-key", &wrong]);
    assert!(!ok, "{out}");
    assert!(out.contains("BROKEN: signing keys at link 1"), "{out}");
    assert!(out.contains("not the trusted sha256:"), "{out}");
    let (ok, out, _) = run(&data, &["audit", "verify"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("was not checked against an out-of-band copy"),
        "{out}"
    );
}
