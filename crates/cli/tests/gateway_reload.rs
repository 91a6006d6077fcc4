//! `portcullis serve` with a gateway: SIGHUP applies a valid new configuration and refuses an
//! invalid one while the running configuration keeps serving.
#![cfg(unix)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A minimal upstream: answers every request with 200 "upstream" and closes.
fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || answer(conn));
        }
    });
    addr
}

fn answer(mut conn: TcpStream) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" {
            break;
        }
        line.clear();
    }
    let _ = conn
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The status code of `GET path` on the gateway, or 0 if it cannot connect.
fn status(port: u16, path: &str) -> u16 {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    if c.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn write_config(
    file: &Path,
    admin: u16,
    gateway: u16,
    upstream: SocketAddr,
    routes: &[(&str, &str, &str)],
) {
    let mut s = format!(
        "listen = \"127.0.0.1:{admin}\"\n[log]\nformat = \"text\"\n[gateway]\nlisten = \"127.0.0.1:{gateway}\"\n[gateway.upstreams.main]\nurl = \"http://{upstream}\"\n"
    );
    for (name, prefix, up) in routes {
        s.push_str(&format!(
            "[[gateway.routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{up}\"\npublic = true\n"
        ));
    }
    std::fs::write(file, s).expect("write config");
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hup(child: &Child) {
    let ok = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -HUP");
}

#[test]
fn sighup_reloads_a_valid_configuration_and_refuses_an_invalid_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("portcullis.toml");
    let up = upstream();
    let (admin, gw) = (free_port(), free_port());
    write_config(&file, admin, gw, up, &[("a", "/a", "main")]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .env_remove("PORTCULLIS_CONFIG")
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis serve");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push_str(&(line + "\n"));
        }
    });
    let server = Server(child);
    wait_for("the gateway to serve /a", || status(gw, "/a/1") == 200);
    assert_eq!(status(gw, "/b/1"), 404, "no route /b yet");

    write_config(
        &file,
        admin,
        gw,
        up,
        &[("a", "/a", "main"), ("b", "/b", "main")],
    );
    hup(&server.0);
    wait_for("the reloaded route /b", || status(gw, "/b/1") == 200);

    write_config(
        &file,
        admin,
        gw,
        up,
        &[("a", "/a", "main"), ("c", "/c", "nowhere")],
    );
    hup(&server.0);
    wait_for("the refusal in the log", || {
        log.lock()
            .expect("lock")
            .contains("configuration reload refused")
    });
    assert_eq!(
        status(gw, "/b/1"),
        200,
        "the running configuration keeps serving"
    );
    assert_eq!(status(gw, "/c/1"), 404);
    assert!(
        log.lock().expect("lock").contains("nowhere"),
        "the log line names the offending entry"
    );
}
