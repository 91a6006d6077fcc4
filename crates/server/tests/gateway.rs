//! The gateway over real sockets: a real upstream on 127.0.0.1:0, portcullis in front of it.
mod support;

use std::{sync::atomic::Ordering, time::Duration};

use portcullis_server::gateway::{
    config::{GatewayConfig, RateLimitConfig, RouteEnvironment},
    rewrite::RewriteMode,
};
use portcullis_testkit::{TestServer, spawn_with};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::{
    gateway::{metrics, route},
    upstream::{self, Upstream},
};

fn config(up: &Upstream) -> GatewayConfig {
    let mut g = support::gateway::config(format!("http://{}", up.addr), 1_000);
    g.upstreams.insert(
        "dead".into(),
        support::gateway::upstream("http://127.0.0.1:1".into(), 1_000),
    );
    g.policies.insert(
        "tight".into(),
        RateLimitConfig {
            requests: 3,
            per_seconds: 60,
            burst: None,
        },
    );
    let mut read = route("invoices-read", "/v1/invoices", "main");
    read.methods = vec!["GET".into()];
    read.scopes = vec!["invoices:read".into()];
    read.environment = RouteEnvironment::Live;
    let mut write = route("invoices-write", "/v1/invoices", "main");
    write.methods = vec!["POST".into()];
    write.scopes = vec!["invoices:write".into()];
    let mut public = route("public", "/public", "main");
    public.public = true;
    let mut upload = route("upload", "/upload", "main");
    upload.upload = true;
    upload.max_body_bytes = Some(1024 * 1024);
    let mut limited = route("limited", "/limited", "main");
    limited.rate_limit = Some("tight".into());
    let mut big = route("big", "/big", "main");
    big.max_body_bytes = Some(1 << 30);
    g.routes = vec![
        read,
        write,
        public,
        upload,
        limited,
        big,
        route("down", "/down", "dead"),
        route("rest", "/", "main"),
    ];
    g
}

async fn setup(adjust: impl FnOnce(&mut GatewayConfig) + Send) -> (TestServer, Upstream, String) {
    let up = upstream::start().await;
    let mut g = config(&up);
    adjust(&mut g);
    let server = spawn_with(move |c| c.gateway = g).await;
    server.tenant("acme").await;
    let (_, secret) = server
        .key(
            "acme",
            json!({"name": "k", "environment": "live", "scopes": ["invoices:read", "files:write"]}),
        )
        .await;
    (server, up, secret)
}

fn client() -> Client {
    Client::builder().no_proxy().build().expect("client")
}

async fn get_json(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn proxies_with_identity_and_strips_credentials() {
    let (s, _up, secret) = setup(|_| {}).await;
    let resp = client()
        .get(s.gateway_url("/v1/invoices/42?page=2"))
        .bearer_auth(&secret)
        .header("x-portcullis-tenant", "evil")
        .header("x-portcullis-scopes", "admin:*")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("x-request-id", "req-test-1")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["x-request-id"], "req-test-1");
    let (status, v) = get_json(resp).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["path"], "/v1/invoices/42");
    assert_eq!(v["query"], "page=2");
    let h = &v["headers"];
    assert!(h.get("authorization").is_none(), "credential stripped: {h}");
    assert!(h.get("x-api-key").is_none());
    assert!(
        h.get("x-hop").is_none(),
        "connection-listed header stripped"
    );
    assert_eq!(h["x-portcullis-tenant"], json!(["acme"]), "not spoofable");
    assert_eq!(h["x-portcullis-environment"], json!(["live"]));
    assert_eq!(
        h["x-portcullis-scopes"],
        json!(["files:write invoices:read"])
    );
    assert!(
        h["x-portcullis-key-id"][0]
            .as_str()
            .is_some_and(|k| k.starts_with("key_"))
    );
    assert_eq!(
        h["x-forwarded-for"],
        json!(["127.0.0.1"]),
        "an untrusted peer's chain is dropped"
    );
    assert_eq!(h["x-request-id"], json!(["req-test-1"]));
    // X-API-Key works too, and the secret never reaches the upstream in any header.
    let (status, v) = get_json(
        client()
            .get(s.gateway_url("/v1/invoices"))
            .header("x-api-key", &secret)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!v.to_string().contains(&secret));
}

#[tokio::test]
async fn refusals_have_stable_codes() {
    let (s, _up, secret) = setup(|_| {}).await;
    let (_, test_key) = s
        .key(
            "acme",
            json!({"name": "t", "environment": "test", "scopes": ["invoices:read"]}),
        )
        .await;
    let c = client();
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_owned();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.get(s.gateway_url("/v1/invoices")),
            401,
            "missing_credential",
        ),
        (
            c.get(s.gateway_url("/v1/invoices"))
                .bearer_auth("sk_live_notarealkeyatallnotarealkeyatall00000"),
            401,
            "invalid_api_key",
        ),
        (
            c.get(s.gateway_url("/v1/invoices"))
                .bearer_auth(&s.root_secret),
            401,
            "invalid_api_key",
        ),
        (
            c.get(s.gateway_url("/v1/invoices")).bearer_auth(&test_key),
            403,
            "environment_mismatch",
        ),
        (
            c.post(s.gateway_url("/v1/invoices")).bearer_auth(&secret),
            403,
            "insufficient_scope",
        ),
        (
            c.get(s.gateway_url("/v1/invoices"))
                .bearer_auth(&secret)
                .header("x-tenant-id", "other"),
            403,
            "tenant_mismatch",
        ),
        (
            c.get(s.gateway_url(&format!("/v1/invoices?api_key={secret}"))),
            400,
            "api_key_in_query",
        ),
        (
            c.delete(s.gateway_url("/v1/invoices")).bearer_auth(&secret),
            405,
            "method_not_allowed",
        ),
        (
            c.get(s.gateway_url("/down")).bearer_auth(&secret),
            502,
            "upstream_unavailable",
        ),
    ];
    for (req, status, want) in cases {
        let (got, v) = get_json(req.send().await.expect("send")).await;
        assert_eq!(got.as_u16(), status, "{want}: {v}");
        assert_eq!(code(&v), want, "{v}");
        assert!(!v.to_string().contains(&secret), "no secret in errors");
    }
    // Dot segments would let a public prefix reach another route upstream: refused. (Sent raw:
    // HTTP clients normalise them away.)
    for path in [
        "/public/../v1/invoices",
        "/public/%2e%2e/v1/invoices",
        "/public/a%2fb",
    ] {
        let answer = support::raw::get(s.gateway_addr.expect("gateway"), path).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("\"invalid_path\""), "{path}: {answer}");
    }
    // A public route needs no key.
    let (got, v) = get_json(
        c.get(s.gateway_url("/public/x"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(got, 200, "{v}");
    assert!(v["headers"].get("x-portcullis-tenant").is_none());
}

#[tokio::test]
async fn upstream_slow_gets_504_and_client_disconnect_cancels_upstream() {
    let (s, up, secret) = setup(|_| {}).await;
    let (status, v) = get_json(
        client()
            .get(s.gateway_url("/slow"))
            .bearer_auth(&secret)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["code"], "upstream_timeout");

    // The client gives up on /hang: the gateway must drop its upstream request.
    let short = Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    assert!(
        short
            .get(s.gateway_url("/hang"))
            .bearer_auth(&secret)
            .send()
            .await
            .is_err()
    );
    assert!(up.seen.hang_started.load(Ordering::SeqCst));
    for _ in 0..50 {
        if up.seen.hang_dropped.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the upstream request was not cancelled when the client went away");
}

#[tokio::test]
async fn limiter_is_exact_on_a_manual_clock() {
    let (s, _up, secret) = setup(|_| {}).await;
    let c = client();
    let call = || c.get(s.gateway_url("/limited")).bearer_auth(&secret).send();
    for i in 0..3 {
        let resp = call().await.expect("send");
        assert_eq!(
            resp.status(),
            200,
            "request {i} within the burst: {:?}",
            resp.headers()
        );
        assert_eq!(resp.headers()["ratelimit-policy"], "\"tight\";q=3;w=60");
        let remaining = format!("\"tight\";r={}", 2 - i);
        let rl = resp.headers()["ratelimit"].to_str().expect("ascii");
        assert!(rl.starts_with(&remaining), "{rl}");
    }
    let resp = call().await.expect("send");
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "20");
    assert!(resp.headers().contains_key("ratelimit"));
    let (_, v) = get_json(resp).await;
    assert_eq!(v["error"]["code"], "rate_limited");
    s.clock.advance(time::Duration::seconds(19));
    assert_eq!(call().await.expect("send").status(), 429, "not yet");
    s.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        call().await.expect("send").status(),
        200,
        "one more after T"
    );
    assert_eq!(call().await.expect("send").status(), 429);
    s.clock.advance(time::Duration::seconds(60));
    for _ in 0..3 {
        assert_eq!(call().await.expect("send").status(), 200, "full again");
    }
    // Another route without a policy is not limited by this one.
    assert_eq!(
        c.get(s.gateway_url("/v1/invoices"))
            .bearer_auth(&secret)
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
}

#[tokio::test]
async fn brute_force_is_throttled_per_address() {
    let (s, _up, secret) = setup(|g| {
        g.brute_force.threshold = 3;
        g.brute_force.window_seconds = 60;
        g.brute_force.cooldown_seconds = 120;
    })
    .await;
    let c = client();
    for i in 0..4 {
        let guess = format!("sk_live_guess{i}");
        let (status, _) = get_json(
            c.get(s.gateway_url("/v1/invoices"))
                .bearer_auth(&guess)
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(status, 401, "guess {i}");
    }
    let resp = c
        .get(s.gateway_url("/v1/invoices"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.status(),
        429,
        "the address is blocked, even with a good key"
    );
    assert!(resp.headers().contains_key("retry-after"));
    let (_, v) = get_json(resp).await;
    assert_eq!(v["error"]["code"], "too_many_failed_attempts");
    let metrics = metrics(&s).await;
    assert!(
        metrics.contains("portcullis_brute_force_blocks_total 1"),
        "{metrics}"
    );
    s.clock.advance(time::Duration::seconds(121));
    let resp = c
        .get(s.gateway_url("/v1/invoices"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200, "after the cooldown");
}

#[tokio::test]
async fn trusted_proxy_chain_decides_the_client_address() {
    let (s, _up, _) = setup(|g| g.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let (_, pinned) = s
        .key(
            "acme",
            json!({"name": "p", "environment": "live", "scopes": ["invoices:read"],
                   "ip_allowlist": ["198.51.100.0/24"]}),
        )
        .await;
    let c = client();
    let with_xff = |xff: &str| {
        c.get(s.gateway_url("/v1/invoices"))
            .bearer_auth(&pinned)
            .header("x-forwarded-for", xff)
            .send()
    };
    let (status, v) = get_json(with_xff("6.6.6.6, 198.51.100.7").await.expect("send")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["headers"]["x-forwarded-for"],
        json!(["6.6.6.6, 198.51.100.7, 127.0.0.1"]),
        "a trusted peer's chain is kept and appended to"
    );
    // The right-most untrusted entry counts, not a spoofed left-most one.
    let (status, v) = get_json(with_xff("198.51.100.7, 6.6.6.6").await.expect("send")).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "ip_not_allowed");
}

#[tokio::test]
async fn untrusted_peer_cannot_spoof_its_address() {
    let (s, _up, _) = setup(|_| {}).await;
    let (_, pinned) = s
        .key(
            "acme",
            json!({"name": "p", "environment": "live", "scopes": ["invoices:read"],
                   "ip_allowlist": ["198.51.100.0/24"]}),
        )
        .await;
    let (status, v) = get_json(
        client()
            .get(s.gateway_url("/v1/invoices"))
            .bearer_auth(&pinned)
            .header("x-forwarded-for", "198.51.100.7")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "ip_not_allowed");
}

#[tokio::test]
async fn reload_valid_and_invalid() {
    let (s, up, secret) = setup(|_| {}).await;
    let gw = s.gateway.clone().expect("gateway");
    let get = |path: &'static str| {
        client()
            .get(s.gateway_url(path))
            .bearer_auth(&secret)
            .send()
    };
    let mut cfg = config(&up);
    cfg.routes.retain(|r| r.name != "rest");
    let mut extra = route("extra", "/extra", "main");
    extra.public = true;
    cfg.routes.push(extra);
    gw.reload(&cfg).expect("valid reload");
    assert_eq!(get("/extra/1").await.expect("send").status(), 200);
    assert_eq!(
        get("/chunked").await.expect("send").status(),
        404,
        "the catch-all route is gone"
    );
    let mut bad = cfg.clone();
    bad.routes
        .push(route("broken", "/broken", "no-such-upstream"));
    let err = gw.reload(&bad).expect_err("invalid reload refused");
    assert!(err.to_string().contains("no-such-upstream"), "{err}");
    assert_eq!(
        get("/extra/1").await.expect("send").status(),
        200,
        "the old configuration keeps serving"
    );
}

#[tokio::test]
async fn metrics_count_gateway_requests() {
    let (s, _up, secret) = setup(|_| {}).await;
    let c = client();
    c.get(s.gateway_url("/v1/invoices"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("send");
    let metrics = metrics(&s).await;
    assert!(
        metrics.contains(
            "portcullis_gateway_requests_total{route=\"invoices-read\",status=\"200\",decision=\"allowed\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "portcullis_gateway_upstream_duration_seconds_count{route=\"invoices-read\"} 1"
        )
    );
    assert!(metrics.contains("portcullis_gateway_open_connections"));
}

#[tokio::test]
async fn own_key_limit_tenant_limit_and_revocation_apply_at_once() {
    let (s, _up, secret) = setup(|_| {}).await;
    let (limited_id, limited) = s
        .key(
            "acme",
            json!({"name": "l", "environment": "live", "scopes": ["invoices:read"],
                   "rate_limit": {"requests": 2, "per_seconds": 10}}),
        )
        .await;
    let c = client();
    let call = |key: &str| c.get(s.gateway_url("/v1/invoices")).bearer_auth(key).send();
    for _ in 0..2 {
        let resp = call(&limited).await.expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["ratelimit-policy"], "\"key\";q=2;w=10");
    }
    let resp = call(&limited).await.expect("send");
    assert_eq!(resp.status(), 429, "the key's own limit");
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(
        call(&secret).await.expect("send").status(),
        200,
        "other keys unaffected"
    );

    // A tenant limit counts every key of the tenant; changing it applies at once.
    let (st, v) = s
        .json(
            Method::PATCH,
            "/v1/tenants/acme",
            &s.root_secret,
            Some(json!({"rate_limit": {"requests": 1, "per_seconds": 60}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let resp = call(&secret).await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["ratelimit-policy"], "\"tenant\";q=1;w=60");
    let resp = call(&secret).await.expect("send");
    assert_eq!(resp.status(), 429, "the tenant's limit");
    assert_eq!(resp.headers()["ratelimit"], "\"tenant\";r=0;t=60");

    // Revocation through the admin API: the next gateway request is refused.
    s.clock.advance(time::Duration::seconds(60));
    let (st, _) = s
        .json(
            Method::POST,
            &format!("/v1/tenants/acme/keys/{limited_id}/revoke"),
            &s.root_secret,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = get_json(call(&limited).await.expect("send")).await;
    assert_eq!(st, 401, "{v}");
    assert_eq!(v["error"]["code"], "invalid_api_key");
}

/// Every header that could rewrite the request, in the case and spelling a client may choose
/// (`_` for `-` reaches CGI / WSGI / PHP upstreams as the same variable), and one benign header.
const REWRITERS: &[(&str, &str)] = &[
    ("X-HTTP-Method-Override", "DELETE"),
    ("x-http-method", "DELETE"),
    ("X-METHOD-OVERRIDE", "PUT"),
    ("X-Original-URL", "/admin/x"),
    ("x-rewrite-url", "/admin/x"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Port", "4443"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Forwarded-Proto", "https"),
    ("X-Real-IP", "198.51.100.7"),
    ("Forwarded", "for=198.51.100.7;proto=https"),
    ("X_HTTP_Method_Override", "PATCH"),
    ("X_Forwarded_Host", "evil2.example"),
    ("X-Portcullis_Tenant", "evil"),
    ("X-App-Trace", "keep-me"),
];

/// The names of `h` (the upstream's echo of its headers) as a CGI-style upstream reads them.
fn read_as_cgi(h: &Value) -> Vec<String> {
    h.as_object()
        .expect("headers")
        .keys()
        .map(|k| k.to_ascii_lowercase().replace('_', "-"))
        .collect()
}

const OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

#[tokio::test]
async fn rewrite_headers_from_a_client_never_reach_the_upstream() {
    let (s, _up, secret) = setup(|_| {}).await;
    let auth = format!("Bearer {secret}");
    let mut sent = REWRITERS.to_vec();
    sent.push(("Authorization", &auth));
    let (status, v) =
        support::raw::request(s.gateway_addr.expect("gateway"), "POST", "/v1/x", &sent).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/v1/x");
    let h = &v["headers"];
    let names = read_as_cgi(h);
    for gone in OVERRIDES.iter().chain(&[
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-real-ip",
    ]) {
        assert!(
            !names.iter().any(|n| n == gone),
            "{gone} reached the upstream: {h}"
        );
    }
    assert_eq!(
        h["x-forwarded-proto"],
        json!(["http"]),
        "the listener's scheme"
    );
    assert_eq!(
        h["forwarded"],
        json!(["for=127.0.0.1;proto=http;host=\"localhost\""]),
        "the client's element is replaced by the gateway's"
    );
    assert_eq!(h["x-portcullis-tenant"], json!(["acme"]));
    assert_eq!(
        names.iter().filter(|n| *n == "x-portcullis-tenant").count(),
        1,
        "no alias of the identity header: {h}"
    );
    assert_eq!(h["x-app-trace"], json!(["keep-me"]), "benign headers pass");
}

#[tokio::test]
async fn a_trusted_proxy_keeps_forwarding_headers_but_never_overrides() {
    let (s, _up, secret) = setup(|g| g.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let auth = format!("Bearer {secret}");
    let mut sent = REWRITERS.to_vec();
    sent.push(("Authorization", &auth));
    let (status, v) =
        support::raw::request(s.gateway_addr.expect("gateway"), "POST", "/v1/x", &sent).await;
    assert_eq!(status, 200, "{v}");
    let h = &v["headers"];
    let names = read_as_cgi(h);
    for gone in OVERRIDES {
        assert!(
            !names.iter().any(|n| n == gone),
            "{gone} reached the upstream: {h}"
        );
    }
    assert_eq!(h["x-forwarded-host"], json!(["evil.example"]), "{h}");
    assert!(
        h.get("x_forwarded_host").is_none(),
        "only canonical spellings: {h}"
    );
    assert_eq!(h["x-forwarded-port"], json!(["4443"]));
    assert_eq!(h["x-forwarded-prefix"], json!(["/admin"]));
    assert_eq!(
        h["x-forwarded-proto"],
        json!(["https"]),
        "the proxy's scheme"
    );
    assert_eq!(h["x-real-ip"], json!(["198.51.100.7"]));
    assert_eq!(
        h["forwarded"],
        json!(["for=198.51.100.7;proto=https, for=127.0.0.1;proto=http;host=\"localhost\""])
    );
    assert_eq!(h["x-app-trace"], json!(["keep-me"]));
}

#[tokio::test]
async fn refuse_mode_answers_400_forbidden_header() {
    for trusted in [false, true] {
        let (s, up, secret) = setup(|g| {
            g.rewrite_headers = RewriteMode::Refuse;
            if trusted {
                g.trusted_proxies = vec!["127.0.0.1/32".into()];
            }
        })
        .await;
        let addr = s.gateway_addr.expect("gateway");
        let auth = format!("Bearer {secret}");
        let with = |extra: (&'static str, &'static str)| {
            vec![
                ("Authorization", auth.clone()),
                (extra.0, extra.1.to_owned()),
            ]
        };
        let send = |headers: Vec<(&'static str, String)>| async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            support::raw::request(addr, "GET", "/v1/invoices", &h).await
        };
        for (name, value) in [
            ("X-HTTP-Method-Override", "DELETE"),
            ("x_original_url", "/admin/x"),
        ] {
            let (status, v) = send(with((name, value))).await;
            assert_eq!(status, 400, "{name} (trusted {trusted}): {v}");
            assert_eq!(v["error"]["code"], "forbidden_header");
        }
        let (status, v) = send(with(("X-Forwarded-Host", "evil.example"))).await;
        if trusted {
            assert_eq!(status, 200, "a trusted proxy's forwarding header: {v}");
            assert_eq!(v["headers"]["x-forwarded-host"], json!(["evil.example"]));
        } else {
            assert_eq!(status, 400, "{v}");
            assert_eq!(v["error"]["code"], "forbidden_header");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("X-Forwarded-Host")),
                "{v}"
            );
        }
        let (status, v) = send(with(("X-App-Trace", "1"))).await;
        assert_eq!(status, 200, "{v}");
        let reached = if trusted { 2 } else { 1 };
        assert_eq!(
            up.seen.requests.load(Ordering::SeqCst),
            reached,
            "refused requests never reach the upstream"
        );
    }
}
