//! Tests of `config.rs`.
use super::*;

#[test]
fn defaults_are_safe_and_valid() {
    let c = Config::default();
    assert!(c.listen.ip().is_loopback());
    assert!(c.validate().is_ok());
}

#[test]
fn tooling_variables_are_not_configuration() {
    for tooling in ["REQUIRE_SERVICES", "CONFIG", "TEST_PG_URL", "bench_rounds"] {
        assert!(!is_config_var(tooling), "{tooling}");
    }
    for config in ["LISTEN", "CACHE__CAPACITY", "log__level"] {
        assert!(is_config_var(config), "{config}");
    }
}

#[test]
fn file_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("p.toml");
    std::fs::write(&f, "listen = \"0.0.0.0:9000\"\n").expect("write");
    assert!(
        Config::load(Some(&f)).is_err(),
        "plaintext on a public address refused"
    );
    std::fs::write(&f, "listen = \"127.0.0.1:9000\"\n[cache]\ncapacity = 5\n").expect("write");
    let c = Config::load(Some(&f)).expect("valid");
    assert_eq!(c.cache.capacity, 5);
    assert_eq!(c.listen.port(), 9000);
    std::fs::write(&f, "listn = \"127.0.0.1:9000\"\n").expect("write");
    assert!(Config::load(Some(&f)).is_err(), "unknown keys refused");
    std::fs::write(
        &f,
        "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[gateway]\nrewrite_headers = \"refuse\"\n",
    )
    .expect("write");
    let c = Config::load(Some(&f)).expect("valid");
    assert_eq!(c.trusted_proxies.len(), 2);
    assert_eq!(
        c.gateway.rewrite_headers,
        crate::config::gateway::RewriteMode::Refuse
    );
    for bad in [
        "trusted_proxies = [\"10.0.0.0/33\"]\n",
        "[gateway]\nrewrite_headers = \"drop\"\n",
    ] {
        std::fs::write(&f, bad).expect("write");
        assert!(Config::load(Some(&f)).is_err(), "{bad}");
    }
}

#[test]
fn connection_sections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("p.toml");
    std::fs::write(
        &f,
        "[connections]\nmax_connections = 10\nmax_connections_per_address = 2\n[gateway.connections]\nheader_read_timeout_ms = 2000\n",
    )
    .expect("write");
    let c = Config::load(Some(&f)).expect("valid");
    assert_eq!(c.connections.max_connections, 10);
    assert_eq!(c.connections.max_connections_per_address, 2);
    assert_eq!(c.gateway.connections.header_read_timeout_ms, 2_000);
    assert_eq!(c.gateway.connections.max_connections, 4_096);
    for bad in [
        "[connections]\nheader_read_timeout_ms = 0\n",
        "[connections]\nmax_connections = 10\nmax_connections_per_address = 11\n",
        "[gateway.connections]\nmax_header_bytes = 100\n",
        "[gateway.connections]\nbogus = 1\n",
    ] {
        std::fs::write(&f, bad).expect("write");
        assert!(Config::load(Some(&f)).is_err(), "{bad}");
    }
}

#[test]
fn audit_section() {
    let c = Config::default();
    assert!(c.audit.enabled);
    assert_eq!(c.audit.mode, AuditMode::FailClosed);
    assert_eq!(c.audit_database(), c.data_dir.join("audit.sqlite3"));
    assert_eq!(
        c.audit_signing_key_file(),
        c.data_dir.join("audit-signing.key")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("p.toml");
    std::fs::write(
        &f,
        "[audit]\nmode = \"best_effort\"\nclient_ip = \"pseudonymise\"\nqueue_capacity = 8\ndatabase = \"/tmp/a.db\"\n[audit.tenant_retention_days]\nacme = 30\n",
    )
    .expect("write");
    let c = Config::load(Some(&f)).expect("valid");
    assert_eq!(c.audit.mode, AuditMode::BestEffort);
    assert_eq!(c.audit.client_ip, ClientIpMode::Pseudonymise);
    assert_eq!(c.audit.queue_capacity, 8);
    assert_eq!(c.audit_database(), PathBuf::from("/tmp/a.db"));
    assert_eq!(c.audit.retention_days_of("acme"), 30);
    assert_eq!(c.audit.retention_days_of("beta"), 400);
    for bad in [
        "[audit]\nmode = \"sometimes\"\n",
        "[audit]\nretention_days = 0\n",
        "[audit]\nqueue_capacity = 0\n",
        "[audit]\nbatch_max = 0\n",
        "[audit]\ncheckpoint_every_seconds = 0\n",
        "[audit.tenant_retention_days]\nacme = 0\n",
        "[audit.tenant_retention_days]\n\"NOT A TENANT\" = 5\n",
        "[audit]\nclient_ip = \"hide\"\n",
        "[audit]\nmax_bytes = 0\n",
        "[audit]\nrefusal_window_seconds = 0\n",
        "[audit]\nrefusal_max_groups = 0\n",
    ] {
        std::fs::write(&f, bad).expect("write");
        assert!(Config::load(Some(&f)).is_err(), "{bad}");
    }
}

#[test]
fn a_listener_with_tls_may_use_a_public_address_and_its_options_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("tls.toml");
    let text = "listen = \"0.0.0.0:8443\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n\
                [gateway]\nlisten = \"0.0.0.0:443\"\n";
    std::fs::write(&f, text).expect("write");
    let err = Config::load(Some(&f)).expect_err("gateway without tls");
    assert!(err.to_string().contains("[gateway.tls]"), "{err}");
    let text = format!("{text}[gateway.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n");
    std::fs::write(&f, &text).expect("write");
    let c = Config::load(Some(&f)).expect("both listeners with TLS");
    let tls = c.tls.expect("tls");
    assert_eq!(tls.hsts_max_age_seconds, 63_072_000);
    assert_eq!(tls.reload_check_seconds, 10);
    assert!(c.gateway.tls.is_some());
    let bad = text.clone().replace(
        "key_file = \"k.pem\"\n[gateway]",
        "key_file = \"k.pem\"\nreload_check_seconds = 0\n[gateway]",
    );
    std::fs::write(&f, bad).expect("write");
    let err = Config::load(Some(&f)).expect_err("out of range");
    assert!(
        err.to_string().contains("tls.reload_check_seconds"),
        "{err}"
    );
    std::fs::write(
        &f,
        text.clone()
            .replace("[tls]\n", "[tls]\ncert_path = \"x\"\n"),
    )
    .expect("write");
    assert!(Config::load(Some(&f)).is_err(), "unknown keys refused");
}
