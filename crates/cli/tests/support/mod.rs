//! What the tests of the `portcullis` binary share: a minimal upstream, free ports, polling, and
//! a server process that is killed when dropped.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A minimal upstream: answers every request with 200 "upstream" and closes.
pub fn upstream() -> SocketAddr {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `GET path` on a local port with extra header lines; the status (0 if it cannot connect) and
/// the whole answer.
pub fn get(port: u16, path: &str, headers: &str) -> (u16, String) {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{headers}connection: close\r\n\r\n");
    if c.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    (
        out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0),
        out,
    )
}

/// The status code of `GET path`, or 0 if it cannot connect.
pub fn status(port: u16, path: &str) -> u16 {
    get(port, path, "").0
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// A running `portcullis serve`, killed (SIGKILL) when dropped; its stderr is collected.
pub struct Server {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push_str(&(line + "\n"));
        }
    });
    text
}

/// Starts `portcullis --config FILE --data-dir DATA serve`.
pub fn serve(config: &Path, data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .env_remove("PORTCULLIS_CONFIG")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis serve");
    let log = collect(child.stderr.take().expect("stderr"));
    let stdout = collect(child.stdout.take().expect("stdout"));
    Server { child, log, stdout }
}

/// The `portcullis` binary, without a configuration file from the environment.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    c.env_remove("PORTCULLIS_CONFIG");
    c
}

/// Runs `portcullis --data-dir DATA ARGS…`: success, stdout, stderr.
pub fn run(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = bin()
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run portcullis");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes a configuration: the admin API on `admin`, the gateway on `gateway` with one upstream
/// `main` and public routes `(name, path prefix, upstream)`.
pub fn write_config(
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
