//! The `portcullis` binary: operator commands on a data directory, and `serve`'s first start.
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{bin, run};

mod support;

#[test]
fn operator_commands_work_on_the_data_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let (ok, out, err) = run(
        &dir,
        &[
            "--output",
            "json",
            "tenant",
            "create",
            "--id",
            "acme",
            "--name",
            "Acme",
            "--key-prefix",
            "acme",
        ],
    );
    assert!(ok, "{err}");
    let t: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(t["id"], "acme");

    let (ok, out, err) = run(
        &dir,
        &[
            "--output",
            "json",
            "key",
            "create",
            "--tenant",
            "acme",
            "--name",
            "ci",
            "--environment",
            "test",
            "--scopes",
            "invoices:read,invoices:write",
            "--ip",
            "10.0.0.0/8",
        ],
    );
    assert!(ok, "{err}");
    let k: Value = serde_json::from_str(&out).expect("json");
    let secret = k["secret"].as_str().expect("secret").to_owned();
    let id = k["key"]["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("acme_test_"));
    assert_eq!(
        k["key"]["scopes"],
        serde_json::json!(["invoices:read", "invoices:write"])
    );
    assert!(!err.contains(&secret), "the secret is never logged");

    let (ok, out, _) = run(&dir, &["key", "list", "--tenant", "acme"]);
    assert!(ok);
    assert!(
        out.contains(&id) && out.contains("ID") && !out.contains(&secret),
        "{out}"
    );

    let (ok, out, _) = run(
        &dir,
        &[
            "--output",
            "json",
            "key",
            "roll",
            "--tenant",
            "acme",
            &id,
            "--grace-seconds",
            "0",
        ],
    );
    assert!(ok);
    let r: Value = serde_json::from_str(&out).expect("json");
    assert_ne!(r["secret"].as_str(), Some(secret.as_str()));

    let (ok, out, _) = run(
        &dir,
        &["--output", "json", "key", "revoke", "--tenant", "acme", &id],
    );
    assert!(ok);
    assert!(serde_json::from_str::<Value>(&out).expect("json")["revoked_at"].is_string());

    // Table output prints the secret once, after the record.
    let (ok, out, _) = run(
        &dir,
        &[
            "admin-key",
            "create",
            "--name",
            "ops",
            "--tenant",
            "acme",
            "--scopes",
            "keys:read",
        ],
    );
    assert!(ok);
    assert!(
        out.contains("Secret (shown once") && out.contains("pc_admin_"),
        "{out}"
    );

    // Errors: stable code on stderr, non-zero exit, nothing written.
    let (ok, _, err) = run(&dir, &["tenant", "create", "--id", "Bad!", "--name", "x"]);
    assert!(!ok);
    assert!(err.contains("invalid_tenant_id"), "{err}");
    let (ok, _, err) = run(
        &dir,
        &[
            "key",
            "show",
            "--tenant",
            "globex",
            "key_01jf0000000000000000000000",
        ],
    );
    assert!(!ok && err.contains("not_found"), "{err}");
    let (ok, _, err) = run(
        &dir,
        &[
            "admin-key",
            "create",
            "--name",
            "x",
            "--scopes",
            "invoices:read",
        ],
    );
    assert!(!ok && err.contains("invalid_admin_scope"), "{err}");
    let (ok, out, _) = run(&dir, &["--output", "json", "tenant", "list"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .expect("json")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn first_serve_prints_the_root_key_once_and_serves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let start = |dir: &std::path::Path| {
        bin()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve")
    };
    let mut child = start(&dir);
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut addr = None;
    let mut log = String::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        log.push_str(&line);
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "portcullis listening"
        {
            addr = v["addr"].as_str().map(str::to_owned);
            break;
        }
    }
    let addr = addr.expect("server announced its address");
    let health = std::net::TcpStream::connect(&addr).is_ok();
    assert!(health, "listening on {addr}");
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created the root admin key"), "{stdout}");
    let secret = stdout
        .lines()
        .find(|l| l.starts_with("pc_admin_"))
        .expect("secret line")
        .to_owned();
    assert!(
        !log.contains(&secret),
        "the root key is not in the log stream"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("pepper"))
            .expect("pepper")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "pepper file is private");
    }
    // The second start creates no new root key.
    let mut child = start(&dir);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root admin key"));
}

/// Starts `serve --root-key-file FILE` on a fresh data directory and waits until it listens:
/// its address, stdout and stderr, after it was stopped.
fn serve_with_root_key_file(
    dir: &std::path::Path,
    file: &std::path::Path,
) -> (String, String, String) {
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--root-key-file"])
        .arg(file)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut addr = None;
    let mut log = String::new();
    while let Some(Ok(line)) = lines.next() {
        log.push_str(&line);
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "portcullis listening"
        {
            addr = v["addr"].as_str().map(str::to_owned);
            break;
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (addr.unwrap_or_default(), stdout, log)
}

#[cfg(unix)]
#[test]
fn root_key_file_gets_the_secret_instead_of_stdout_and_is_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let file = tmp.path().join("root.key");
    let (addr, stdout, log) = serve_with_root_key_file(&dir, &file);
    assert!(!addr.is_empty(), "{log}");
    let mode = std::fs::metadata(&file)
        .expect("root key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the root key file is private");
    let secret = std::fs::read_to_string(&file)
        .expect("read")
        .trim()
        .to_owned();
    assert!(secret.starts_with("pc_admin_"), "{secret}");
    assert!(stdout.contains("its secret is in"), "{stdout}");
    assert!(
        !stdout.contains(&secret),
        "the secret is not on stdout: {stdout}"
    );
    assert!(!log.contains(&secret), "the secret is not in the log");
    // The secret in the file is the root key's: it lists the admin keys.
    let (ok, listed, err) = run(&dir, &["--output", "json", "admin-key", "list"]);
    assert!(ok, "{err}");
    assert!(listed.contains("\"root\""), "{listed}");

    // An existing file is refused before any key is created, and left as it was.
    let dir2 = tmp.path().join("data2");
    std::fs::write(&file, "keep me\n").expect("write");
    let (addr, stdout, log) = serve_with_root_key_file(&dir2, &file);
    assert!(addr.is_empty(), "the server started: {log}");
    assert!(log.contains("must not exist"), "{log}");
    assert!(!stdout.contains("pc_admin_"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me\n");
    let (ok, listed, err) = run(&dir2, &["--output", "json", "admin-key", "list"]);
    assert!(ok, "{err}");
    assert!(
        !listed.contains("\"root\""),
        "no root key was created: {listed}"
    );
}

#[test]
fn rate_limits_are_set_at_creation_and_shown() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let json_of = |args: &[&str]| {
        let (ok, out, err) = run(&dir, &[&["--output", "json"], args].concat());
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str::<Value>(&out).expect("json")
    };
    let t = json_of(&[
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--rate-limit",
        "1000/60",
    ]);
    assert_eq!(
        t["rate_limit"],
        serde_json::json!({"requests": 1000, "per_seconds": 60, "burst": 1000})
    );
    let k = json_of(&[
        "key",
        "create",
        "--tenant",
        "acme",
        "--name",
        "limited",
        "--environment",
        "live",
        "--rate-limit",
        "100/60:20",
    ]);
    assert_eq!(
        k["key"]["rate_limit"],
        serde_json::json!({"requests": 100, "per_seconds": 60, "burst": 20})
    );
    let id = k["key"]["id"].as_str().expect("id").to_owned();
    let plain = json_of(&[
        "key",
        "create",
        "--tenant",
        "acme",
        "--name",
        "plain",
        "--environment",
        "live",
    ]);
    assert_eq!(plain["key"]["rate_limit"], Value::Null);

    // Tables show a limit the way it is given.
    let (ok, out, _) = run(&dir, &["key", "show", "--tenant", "acme", &id]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("rate_limit") && l.trim_end().ends_with("100/60:20")),
        "{out}"
    );
    let (ok, out, _) = run(&dir, &["key", "list", "--tenant", "acme"]);
    assert!(ok);
    assert!(
        out.contains("RATE_LIMIT") && out.contains("100/60:20"),
        "{out}"
    );
    let (ok, out, _) = run(&dir, &["tenant", "list"]);
    assert!(ok);
    assert!(
        out.contains("RATE_LIMIT") && out.contains("1000/60:1000"),
        "{out}"
    );

    // Malformed or out-of-range limits are usage errors that say what is wrong; nothing is written.
    for (limit, says) in [
        ("100", "REQUESTS/SECONDS"),
        ("100/60:", "REQUESTS/SECONDS"),
        ("ten/60", "REQUESTS/SECONDS"),
        ("0/60", "requests must be between 1 and 1000000"),
        ("100/86401", "per_seconds must be between 1 and 86400"),
        ("100/60:0", "burst must be between 1 and 1000000"),
    ] {
        let out = bin()
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "key",
                "create",
                "--tenant",
                "acme",
                "--name",
                "bad",
                "--environment",
                "live",
                "--rate-limit",
                limit,
            ])
            .output()
            .expect("run portcullis");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{limit}: {err}");
        assert!(
            err.contains("--rate-limit") && err.contains(says),
            "{limit}: {err}"
        );
        let (ok, _, err) = run(
            &dir,
            &[
                "tenant",
                "create",
                "--id",
                "newco",
                "--name",
                "N",
                "--rate-limit",
                limit,
            ],
        );
        assert!(!ok && err.contains(says), "{limit}: {err}");
    }
    let listed = json_of(&["key", "list", "--tenant", "acme"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let tenants = json_of(&["tenant", "list"]);
    assert_eq!(tenants.as_array().map(Vec::len), Some(1));
}

#[test]
fn tenant_ceilings_bind_the_operator_too() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let run_json = |args: &[&str]| run(&dir, &[&["--output", "json"], args].concat());
    let (ok, out, err) = run_json(&[
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--allowed-scopes",
        "invoices:*,files:read",
        "--max-key-rate-limit",
        "100/1:20",
    ]);
    assert!(ok, "{err}");
    let t: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        t["allowed_scopes"],
        serde_json::json!(["files:read", "invoices:*"])
    );
    assert_eq!(
        t["max_key_rate_limit"],
        serde_json::json!({"requests": 100, "per_seconds": 1, "burst": 20})
    );
    let key = |extra: &[&str]| {
        let base = [
            "key",
            "create",
            "--tenant",
            "acme",
            "--name",
            "k",
            "--environment",
            "live",
        ];
        run_json(&[&base[..], extra].concat())
    };
    for (extra, code) in [
        (&["--scopes", "*:*"][..], "scope_not_allowed"),
        (&["--scopes", "files:*"][..], "scope_not_allowed"),
        (
            &["--rate-limit", "1000000/1"][..],
            "rate_limit_above_ceiling",
        ),
    ] {
        let (ok, _, err) = key(extra);
        assert!(!ok && err.contains(code), "{extra:?}: {err}");
    }
    let (ok, out, err) = key(&["--scopes", "invoices:read"]);
    assert!(ok, "{err}");
    let k: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        k["key"]["rate_limit"], t["max_key_rate_limit"],
        "the ceiling by default"
    );
    let (ok, out, _) = run(&dir, &["tenant", "list"]);
    assert!(ok);
    assert!(
        out.contains("ALLOWED_SCOPES")
            && out.contains("files:read,invoices:*")
            && out.contains("100/1:20"),
        "{out}"
    );
}
