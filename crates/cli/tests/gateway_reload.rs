//! `portcullis serve` with a gateway: SIGHUP applies a valid new configuration and refuses an
//! invalid one while the running configuration keeps serving.
#![cfg(unix)]

mod support;

use std::process::Command;

use support::{Server, free_port, serve, status, upstream, wait_for, write_config};

fn hup(server: &Server) {
    let ok = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
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
    let server = serve(&file, &tmp.path().join("data"));
    wait_for("the gateway to serve /a", || status(gw, "/a/1") == 200);
    assert_eq!(status(gw, "/b/1"), 404, "no route /b yet");

    write_config(
        &file,
        admin,
        gw,
        up,
        &[("a", "/a", "main"), ("b", "/b", "main")],
    );
    hup(&server);
    wait_for("the reloaded route /b", || status(gw, "/b/1") == 200);

    write_config(
        &file,
        admin,
        gw,
        up,
        &[("a", "/a", "main"), ("c", "/c", "nowhere")],
    );
    hup(&server);
    wait_for("the refusal in the log", || {
        server
            .log
            .lock()
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
        server.log.lock().expect("lock").contains("nowhere"),
        "the log line names the offending entry"
    );
}
