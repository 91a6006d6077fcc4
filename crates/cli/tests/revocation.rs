//! `portcullis key revoke` beside a running `portcullis serve` on the same data directory: the
//! gateway refuses the key within a second (not after the cache TTL of 60 s).
#![cfg(unix)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_port, get, run, serve, upstream, wait_for};

#[test]
fn a_key_revoked_by_the_cli_is_refused_by_the_running_gateway_within_a_second() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let (admin, gw, up) = (free_port(), free_port(), upstream());
    let file = tmp.path().join("portcullis.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:{admin}\"\n[log]\nformat = \"text\"\n[gateway]\n\
             listen = \"127.0.0.1:{gw}\"\n[gateway.upstreams.main]\nurl = \"http://{up}\"\n\
             [[gateway.routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"main\"\n"
        ),
    )
    .expect("config");
    let json = |args: &[&str]| -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (ok, out, err) = run(&data, &all);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(&out).expect("json")
    };
    json(&["tenant", "create", "--id", "acme", "--name", "Acme"]);
    let k = json(&[
        "key",
        "create",
        "--tenant",
        "acme",
        "--name",
        "ci",
        "--environment",
        "live",
    ]);
    let secret = k["secret"].as_str().expect("secret").to_owned();
    let id = k["key"]["id"].as_str().expect("id").to_owned();
    let auth = format!("authorization: Bearer {secret}\r\n");

    let _server = serve(&file, &data);
    wait_for("the gateway to let the key through", || {
        get(gw, "/things", &auth).0 == 200
    });
    assert_eq!(get(gw, "/things", &auth).0, 200, "cached now");

    json(&["key", "revoke", "--tenant", "acme", &id]);
    let revoked = Instant::now();
    loop {
        let (status, answer) = get(gw, "/things", &auth);
        if status == 401 {
            assert!(answer.contains("invalid_api_key"), "{answer}");
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still {status} {:?} after the revocation",
            revoked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
