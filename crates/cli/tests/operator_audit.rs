//! Operator commands record their changes in the audit log (actor `operator`), also while a
//! server appends to the same chains: the server notices that the chain moved on, seals its
//! batch again, loses nothing, and the log verifies.
#![cfg(unix)]

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Runs `portcullis --data-dir DIR ARGS…`, which must succeed; its stdout.
fn run(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = support::run(dir, args);
    assert!(ok, "{args:?}: {err}");
    out
}

fn export(dir: &Path, tenant: &str) -> Vec<Value> {
    run(dir, &["audit", "export", "--tenant", tenant])
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON entry per line"))
        .collect()
}

type Lines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Starts `portcullis serve` on `dir`; returns the child, its address and its log lines.
fn serve(dir: &Path) -> (std::process::Child, String, Lines) {
    let mut server = support::bin()
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut addr = None;
    while addr.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "portcullis listening"
        {
            addr = v["addr"].as_str().map(str::to_owned);
        }
    }
    let addr = addr.expect("server announced its address");
    (server, addr, lines)
}

/// `GET path` with a bearer key; the status code.
fn get(addr: &str, path: &str, key: &str) -> u16 {
    let (status, _) = fetch(addr, path, key);
    status
}

/// `GET path` with a bearer key; the status code and the body.
fn fetch(addr: &str, path: &str, key: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).expect("connect");
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn operator_changes_are_recorded_beside_a_running_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    run(
        &dir,
        &["tenant", "create", "--id", "acme", "--name", "Acme"],
    );
    let created: Value = serde_json::from_str(&run(
        &dir,
        &["--output", "json", "admin-key", "create", "--name", "ops"],
    ))
    .expect("json");
    let admin = created["secret"].as_str().expect("secret").to_owned();

    let (mut server, addr, lines) = serve(&dir);
    // Keep reading the server's log so it never blocks on a full pipe.
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    // Requests (recorded by the server in acme's chain) interleaved with operator commands
    // (recorded by the CLI in the same chain).
    let mut served = 0;
    for round in 0..4 {
        for _ in 0..5 {
            assert_eq!(get(&addr, "/v1/tenants/acme", &admin), 200, "round {round}");
            served += 1;
        }
        run(
            &dir,
            &[
                "key",
                "create",
                "--tenant",
                "acme",
                "--name",
                &format!("k{round}"),
                "--environment",
                "live",
            ],
        );
    }
    for _ in 0..5 {
        assert_eq!(get(&addr, "/v1/tenants/acme", &admin), 200);
        served += 1;
    }
    let stopped = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let status = server.wait().expect("wait");
    assert!(status.success(), "graceful shutdown: {status}");
    let log = log.join().expect("log reader");
    assert!(
        !log.iter().any(|l| l.contains("audit store write failed")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.contains("sealing the batch again")),
        "the server met the operator's appends: {log:?}"
    );

    let acme = export(&dir, "acme");
    let by =
        |action: &str| -> Vec<&Value> { acme.iter().filter(|e| e["action"] == action).collect() };
    let tenant = by("tenant.create");
    assert_eq!(tenant.len(), 1);
    assert_eq!(tenant[0]["actor"], "operator");
    let keys = by("key.create");
    assert_eq!(keys.len(), 4);
    assert!(keys.iter().all(|k| k["actor"] == "operator"));
    assert!(keys.iter().all(|k| k["data"]["after"]["hint"].is_string()));
    let admin_id = created["admin_key"]["id"].as_str().expect("id");
    let requests = by("request");
    assert_eq!(requests.len(), served, "every served request was written");
    assert!(requests.iter().all(|r| r["actor"] == admin_id));
    // Numbering has no gaps although two processes appended.
    for (i, e) in acme.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "{e}");
    }
    let system = export(&dir, "_system");
    let admin_create = system
        .iter()
        .find(|e| e["action"] == "admin_key.create")
        .expect("admin key creation recorded");
    assert_eq!(admin_create["actor"], "operator");
    assert!(
        !admin_create
            .to_string()
            .contains(&admin[admin.len() - 20..])
    );
    // The whole log verifies.
    run(&dir, &["audit", "verify"]);
}

#[test]
fn the_audit_section_takes_environment_overrides() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let out = support::bin()
        .arg("--data-dir")
        .arg(&dir)
        .args(["tenant", "list"])
        .env("PORTCULLIS_AUDIT__RETENTION_DAYS", "0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit.retention_days"), "{err}");

    let out = support::bin()
        .arg("--data-dir")
        .arg(&dir)
        .args(["tenant", "create", "--id", "acme", "--name", "Acme"])
        .env("PORTCULLIS_AUDIT__ENABLED", "false")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(
        !dir.join("audit.sqlite3").exists(),
        "no audit log when disabled"
    );

    let elsewhere = tmp.path().join("elsewhere.sqlite3");
    let out = support::bin()
        .arg("--data-dir")
        .arg(&dir)
        .args(["tenant", "create", "--id", "beta", "--name", "Beta"])
        .env("PORTCULLIS_AUDIT__DATABASE", &elsewhere)
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(elsewhere.exists(), "the configured audit database is used");
}
