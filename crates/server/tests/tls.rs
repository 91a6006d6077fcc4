//! TLS on both listeners, tried as clients do: rustls clients pinned to TLS 1.2 and to 1.3,
//! `openssl s_client` offering TLS 1.0 and 1.1 (refused) and `curl`, expired and mismatched
//! certificates, a key that does not belong to its certificate, mutual TLS, a client that
//! never finishes its handshake, and certificates replaced under load.
mod support;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use portcullis_server::{
    config::TlsConfig,
    tls::{TlsError, TlsServer},
};
use portcullis_testkit::{TestServer, spawn_with};
use serde_json::{Value, json};
use support::{
    gateway::route,
    tls::{Client, Pki},
    upstream,
};

const HEALTHZ: &str = "/healthz";

async fn tls_api(tls: TlsConfig) -> TestServer {
    spawn_with(move |c| c.tls = Some(tls)).await
}

#[tokio::test]
async fn the_api_listener_speaks_tls_1_2_and_1_3_with_hsts() {
    let pki = Pki::new("portcullis test CA");
    let s = tls_api(pki.listener_config()).await;
    for (version, want) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let mut c = Client::trusting(&pki.ca_pem);
        c.version = Some(version);
        let a = c.get(s.addr, HEALTHZ, &[]).await.expect("tls answer");
        assert_eq!(a.status, 200, "{want:?}");
        assert_eq!(a.version, Some(want));
        assert_eq!(
            a.headers["strict-transport-security"], "max-age=63072000",
            "HSTS on TLS answers"
        );
    }
    // A plaintext client gets no answer from a TLS listener.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    assert!(plain.get(s.url(HEALTHZ)).send().await.is_err());
}

#[tokio::test]
async fn the_gateway_listener_speaks_tls_and_tells_the_upstream_https() {
    let pki = Pki::new("portcullis test CA");
    let up = upstream::start().await;
    let mut g = support::gateway::config(format!("http://{}", up.addr), 2_000);
    g.routes = vec![route("rest", "/", "main")];
    g.tls = Some(pki.listener_config());
    let s = spawn_with(move |c| c.gateway = g).await;
    s.tenant("acme").await;
    let (_, secret) = s
        .key("acme", json!({"name": "k", "environment": "live"}))
        .await;
    let gw = s.gateway_addr.expect("gateway");
    let c = Client::trusting(&pki.ca_pem);
    let bearer = format!("Bearer {secret}");
    let a = c
        .get(
            gw,
            "/v1/things",
            &[("authorization", &bearer), ("x-forwarded-proto", "http")],
        )
        .await
        .expect("gateway answer");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["strict-transport-security"], "max-age=63072000");
    let seen: Value = serde_json::from_str(&a.body).expect("echo");
    assert_eq!(
        seen["headers"]["x-forwarded-proto"],
        json!(["https"]),
        "{seen}"
    );
    assert!(
        seen["headers"]["forwarded"][0]
            .as_str()
            .is_some_and(|f| f.contains("proto=https")),
        "{seen}"
    );
    let refused = c.get(gw, "/v1/things", &[]).await.expect("answer");
    assert_eq!(refused.status, 401);
}

/// Runs `openssl s_client` against `port` with `args` (off the runtime's thread, which serves
/// the server); `None` when openssl is not installed.
async fn s_client(port: u16, ca: &std::path::Path, args: &[&str]) -> Option<(bool, String)> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca)
        .args(args)
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

fn refused_handshakes(s: &TestServer) -> u64 {
    let text = s.state.metrics.encode();
    text.lines()
        .filter(|l| l.contains("listener_refused_connections") && l.contains("tls_handshake"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn tls_1_0_and_1_1_are_refused_and_1_2_and_1_3_served_to_openssl_and_curl() {
    let pki = Pki::new("portcullis test CA");
    let s = tls_api(pki.listener_config()).await;
    let ca = pki.write("ca.pem", &pki.ca_pem);
    let port = s.addr.port();
    let Some((ok, text)) = s_client(port, &ca, &["-tls1_3"]).await else {
        eprintln!("SKIPPED: openssl is not installed; the rustls clients still cover 1.2 and 1.3");
        return;
    };
    assert!(ok && text.contains("TLSv1.3"), "{text}");
    let (ok, text) = s_client(port, &ca, &["-tls1_2"]).await.expect("openssl");
    assert!(ok && text.contains("TLSv1.2"), "{text}");
    for old in ["-tls1", "-tls1_1"] {
        let before = refused_handshakes(&s);
        // SECLEVEL=0 makes this client offer the old version at all: the refusal is the server's.
        let (ok, text) = s_client(port, &ca, &[old, "-cipher", "DEFAULT@SECLEVEL=0"])
            .await
            .expect("openssl");
        if text.contains("unknown option") || text.contains("Unknown option") {
            eprintln!("SKIPPED ({old}): this openssl cannot offer it at all");
            continue;
        }
        assert!(!ok, "{old} must be refused: {text}");
        assert!(
            !text.contains("no protocols available"),
            "the client did not offer {old}: {text}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while refused_handshakes(&s) == before {
            assert!(
                Instant::now() < deadline,
                "the server did not count the refused {old} handshake"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for version in ["--tlsv1.2", "--tlsv1.3"] {
        let max = if version == "--tlsv1.2" { "1.2" } else { "1.3" };
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{ssl_verify_result}",
            version,
            "--tls-max",
            max,
        ])
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "--cacert",
        ])
        .arg(&ca)
        .arg(format!("https://localhost:{port}{HEALTHZ}"));
        let Ok(out) = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
        else {
            eprintln!("SKIPPED (curl part): curl is not installed");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text,
            "200 0",
            "curl {version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A server serving `issued`, and the error of a client trusting `pki`'s CA.
async fn refused(pki: &Pki, issued: &support::tls::Issued) -> (TestServer, String) {
    let s = tls_api(pki.config_of("served", issued)).await;
    let e = Client::trusting(&pki.ca_pem)
        .get(s.addr, HEALTHZ, &[])
        .await;
    (s, e.expect_err("handshake refused by the client"))
}

#[tokio::test]
async fn expired_and_mismatched_certificates_fail_the_handshake() {
    let pki = Pki::new("portcullis test CA");
    let (_, e) = refused(&pki, &pki.server(&["localhost"], 2015, 2019)).await;
    assert!(e.to_lowercase().contains("expired"), "{e}");
    let (s, e) = refused(&pki, &pki.server(&["other.example"], 2020, 2100)).await;
    assert!(e.contains("not valid for name"), "{e}");

    let stranger = Pki::new("another CA");
    let e = Client::trusting(&stranger.ca_pem)
        .get(s.addr, HEALTHZ, &[])
        .await
        .expect_err("issuer");
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[test]
fn files_that_do_not_make_a_pair_are_refused_with_their_names_and_no_key_material() {
    let pki = Pki::new("portcullis test CA");
    let a = pki.server(&["localhost"], 2020, 2100);
    let b = pki.server(&["localhost"], 2020, 2100);
    let cert = pki.write("a.pem", &a.cert_pem);
    let wrong_key = pki.write("b.key", &b.key_pem);
    let empty = pki.write("empty.pem", "");
    let missing = pki.dir.path().join("missing.pem");
    let mut messages = Vec::new();
    let mut refused = |cert: &std::path::Path, key: &std::path::Path| {
        let err = TlsServer::load(TlsConfig::new(cert, key)).expect_err("refused");
        messages.push(err.to_string());
        err
    };
    let err = refused(&cert, &wrong_key);
    assert!(matches!(err, TlsError::Pair { .. }), "{err}");
    let err = refused(&empty, &wrong_key);
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    let err = refused(&cert, &cert);
    assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    let err = refused(&missing, &wrong_key);
    assert!(err.to_string().contains("missing.pem"), "{err}");
    for m in &messages {
        assert!(!m.contains("PRIVATE KEY") && !m.contains("BEGIN"), "{m}");
    }
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_of_the_configured_authority() {
    let pki = Pki::new("portcullis test CA");
    let clients = Pki::new("operators CA");
    let mut cfg = pki.listener_config();
    cfg.client_ca_file = Some(pki.write("clients.pem", &clients.ca_pem));
    let s = tls_api(cfg).await;
    let anonymous = Client::trusting(&pki.ca_pem);
    assert!(
        anonymous.get(s.addr, HEALTHZ, &[]).await.is_err(),
        "no client certificate"
    );
    let mut known = Client::trusting(&pki.ca_pem);
    let id = clients.client("automation");
    known.identity = Some((id.cert_pem, id.key_pem));
    assert_eq!(
        known.get(s.addr, HEALTHZ, &[]).await.expect("mTLS").status,
        200
    );
    let mut stranger = Client::trusting(&pki.ca_pem);
    let id = Pki::new("someone else").client("automation");
    stranger.identity = Some((id.cert_pem, id.key_pem));
    assert!(
        stranger.get(s.addr, HEALTHZ, &[]).await.is_err(),
        "foreign client certificate"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_cut_at_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let pki = Pki::new("portcullis test CA");
    let tls = pki.listener_config();
    let s = spawn_with(move |c| {
        c.tls = Some(tls);
        c.connections.header_read_timeout_ms = 300;
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed within 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// Certificates replaced while clients keep connecting: every handshake succeeds, new ones get
/// the new certificate once the watcher has seen the files change, and a broken pair written
/// later is refused while the last good one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_under_load_without_a_failed_request() {
    let first = Pki::new("first CA");
    let second = Pki::new("second CA");
    let mut cfg = first.listener_config();
    cfg.reload_check_seconds = 1;
    let (cert_file, key_file) = (cfg.cert_file.clone(), cfg.key_file.clone());
    let s = tls_api(cfg).await;
    let addr = s.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut both = Client::trusting(&first.ca_pem);
    both.roots.push(second.ca_pem.clone());
    let load = {
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match both.get(addr, HEALTHZ, &[]).await {
                    Ok(a) if a.status == 200 => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    // Replace the pair: key first, then certificate (a moment where they do not match).
    let next = second.server(&["localhost", "127.0.0.1"], 2020, 2100);
    std::fs::write(&key_file, &next.key_pem).expect("key");
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::write(&cert_file, &next.cert_pem).expect("cert");
    let only_second = Client::trusting(&second.ca_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while only_second.get(addr, HEALTHZ, &[]).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken pair: refused, the second one keeps serving.
    std::fs::write(&cert_file, "not a certificate").expect("cert");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        only_second
            .get(addr, HEALTHZ, &[])
            .await
            .expect("still served")
            .status,
        200
    );
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(
        done.load(Ordering::Relaxed) > 20,
        "too little load to mean anything"
    );
}
