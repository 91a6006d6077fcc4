//! Rate limits of the gateway at full time resolution: on a manual clock moved in sub-second
//! steps, and end to end over real HTTP and real time.
mod support;

use std::time::{Duration, Instant};

use portcullis_server::gateway::config::{GatewayConfig, RateLimitConfig};
use portcullis_testkit::{TestServer, spawn_realtime_with, spawn_with};
use reqwest::{Client, StatusCode};
use serde_json::json;
use support::{gateway::route, upstream};

/// A gateway whose `/limited` route allows 100 requests a second per key, burst 10.
fn config(url: String) -> GatewayConfig {
    let mut g = support::gateway::config(url, 5_000);
    g.policies.insert(
        "hundred".into(),
        RateLimitConfig {
            requests: 100,
            per_seconds: 1,
            burst: Some(10),
        },
    );
    let mut limited = route("limited", "/limited", "main");
    limited.rate_limit = Some("hundred".into());
    g.routes = vec![limited];
    g
}

async fn key(s: &TestServer) -> String {
    s.tenant("acme").await;
    s.key(
        "acme",
        json!({"name": "k", "environment": "live", "scopes": []}),
    )
    .await
    .1
}

fn client() -> Client {
    Client::builder().no_proxy().build().expect("client")
}

/// Sends `n` requests to `/limited`; returns how many passed (every other one must be a 429).
async fn passed(s: &TestServer, c: &Client, secret: &str, n: usize) -> u64 {
    let mut ok = 0;
    for _ in 0..n {
        let resp = c
            .get(s.gateway_url("/limited"))
            .bearer_auth(secret)
            .send()
            .await
            .expect("send");
        match resp.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    ok
}

/// 100/s with burst 10, on a clock moved in steps of 1 to 37 ms: what passes is exactly the
/// burst plus one per 10 ms elapsed, at every step.
#[tokio::test]
async fn sub_second_steps_admit_burst_plus_elapsed_times_rate() {
    let up = upstream::start().await;
    let url = format!("http://{}", up.addr);
    let s = spawn_with(move |c| c.gateway = config(url)).await;
    let secret = key(&s).await;
    let c = client();
    let mut total = passed(&s, &c, &secret, 15).await;
    assert_eq!(total, 10, "the burst at one instant");
    let mut elapsed_ms = 0u64;
    for step_ms in [1u64, 4, 5, 9, 1, 10, 37, 3, 20, 10, 30] {
        s.clock
            .advance(time::Duration::milliseconds(step_ms as i64));
        elapsed_ms += step_ms;
        total += passed(&s, &c, &secret, 5).await;
        assert_eq!(
            total,
            10 + elapsed_ms / 10,
            "after {elapsed_ms} ms: burst + elapsed x rate"
        );
    }
}

/// Over real HTTP and real time: a client offering ~200 requests a second for 3 s against
/// 100/s burst 10 gets burst + elapsed x 100 through (310 for 3 s), within 10 %.
#[tokio::test]
async fn real_time_rate_is_the_configured_rate() {
    let up = upstream::start().await;
    let url = format!("http://{}", up.addr);
    let s = spawn_realtime_with(move |c| c.gateway = config(url)).await;
    let secret = key(&s).await;
    let c = client();
    // Warm the connection so the first request is not a connect.
    let _ = c.get(s.gateway_url("/none")).send().await;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut sent, mut ok, mut limited) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut last_sent = start;
    while start.elapsed() < Duration::from_secs(3) {
        tick.tick().await;
        last_sent = Instant::now();
        let resp = c
            .get(s.gateway_url("/limited"))
            .bearer_auth(&secret)
            .send()
            .await
            .expect("send");
        sent += 1;
        match resp.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let elapsed = last_sent.duration_since(start).as_secs_f64();
    let expected = 10.0 + elapsed * 100.0;
    assert!(
        sent as f64 > 1.5 * elapsed * 100.0,
        "the client offered more than the rate ({sent} in {elapsed:.2} s)"
    );
    assert!(
        (ok as f64 - expected).abs() <= 0.1 * expected,
        "{ok} passed, {limited} limited in {elapsed:.3} s; expected {expected:.0} +- 10 %"
    );
}
