use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::model::EventType;

const MIN: u64 = 60_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;
/// A window boundary (default windows of 60 s).
const T0: u64 = 28_333_334 * MIN;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn detector(config: AnomalyConfig) -> Detector {
    Detector::new(config).unwrap()
}

fn ip(n: u32) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)))
}

/// `n` requests of `key` spread over window `w` (counted from T0), then the tick that closes it.
fn window(d: &Detector, w: u64, n: u64, key: &str) -> Vec<NewEvent> {
    let start = T0 + w * MIN;
    for i in 0..n {
        d.observe_request(start + i * (MIN - 1) / n.max(1), &acme(), key, ip(1));
    }
    d.tick(start + MIN);
    d.drain()
}

fn of(events: &[NewEvent], kind: EventType) -> Vec<&NewEvent> {
    events.iter().filter(|e| e.kind == kind).collect()
}

fn spikes<'a>(events: &'a [NewEvent], scope: &str) -> Vec<&'a NewEvent> {
    of(events, EventType::AnomalyRateSpike)
        .into_iter()
        .filter(|e| e.data["scope"] == scope)
        .collect()
}

#[test]
fn a_spike_raises_one_event_per_episode_and_again_only_after_the_debounce() {
    let d = detector(AnomalyConfig::default());
    let mut raised = Vec::new();
    // Window 0 is the key's first (partial), windows 1..=5 its baseline.
    for w in 0..=5 {
        let events = window(&d, w, 200, "key_a");
        assert!(events.is_empty(), "window {w}: {events:?}");
    }
    // 10× the baseline: one spike for the key, one for its tenant.
    let events = window(&d, 6, 2000, "key_a");
    let key_spikes = spikes(&events, "key");
    assert_eq!(key_spikes.len(), 1, "{events:?}");
    let e = key_spikes[0];
    assert_eq!(e.tenant, Some(acme()));
    assert_eq!(e.data["key_id"], "key_a");
    assert_eq!(e.data["requests"], 2000);
    assert_eq!(e.data["baseline"], 200.0);
    assert_eq!(e.data["window_seconds"], 60);
    assert!(e.msg_id.starts_with("anomaly.rate_spike:key:key_a:"));
    let tenant_spikes = spikes(&events, "tenant");
    assert_eq!(tenant_spikes.len(), 1);
    assert_eq!(tenant_spikes[0].tenant, Some(acme()));
    assert!(tenant_spikes[0].data.get("key_id").is_none());
    raised.extend(events);
    // The spike goes on, and grows again within the debounce: still the same episode.
    for (w, n) in [(7, 2000), (8, 200), (9, 50_000)] {
        let events = window(&d, w, n, "key_a");
        assert!(spikes(&events, "key").is_empty(), "window {w}: {events:?}");
    }
    // Quiet long enough for the baseline to settle and the episode to end, then a new spike.
    for w in 10..=26 {
        assert!(window(&d, w, 200, "key_a").is_empty(), "window {w}");
    }
    let events = window(&d, 27, 2000, "key_a");
    assert_eq!(spikes(&events, "key").len(), 1, "{events:?}");
    assert_ne!(spikes(&events, "key")[0].msg_id, raised[0].msg_id);
}

#[test]
fn no_spike_below_min_requests_nor_during_warmup() {
    let d = detector(AnomalyConfig::default());
    for w in 0..=5 {
        assert!(window(&d, w, 5, "key_small").is_empty());
    }
    // 18× the baseline, but under 100 requests.
    assert!(window(&d, 6, 90, "key_small").is_empty());
    // A new key's first whole windows are its warm-up.
    let d = detector(AnomalyConfig::default());
    window(&d, 0, 1, "key_new");
    assert!(window(&d, 1, 5000, "key_new").is_empty());
}

#[test]
fn ten_thousand_failures_from_one_ip_raise_one_burst() {
    let d = detector(AnomalyConfig::default());
    for i in 0..10_000 {
        let reason = if i % 10 == 0 {
            "ip_not_allowed"
        } else {
            "invalid_api_key"
        };
        d.observe_failure(T0 + i * 5, None, None, ip(7), reason);
    }
    let events = d.drain();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.kind, EventType::AuthFailureBurst);
    assert_eq!(e.tenant, None);
    assert_eq!(e.data["ip"], "10.0.0.7");
    assert_eq!(e.data["failures"], 20);
    assert_eq!(e.data["reasons"]["invalid_api_key"], 18);
    assert_eq!(e.data["reasons"]["ip_not_allowed"], 2);
    // The burst goes on in the next windows: same episode.
    for i in 0..1000 {
        d.observe_failure(T0 + MIN + i * 50, None, None, ip(7), "invalid_api_key");
    }
    assert!(d.drain().is_empty());
    // Quiet for the debounce (the IP is forgotten meanwhile), then a new burst.
    d.tick(T0 + 20 * MIN);
    assert_eq!(d.tracked().ips, 0);
    for i in 0..20 {
        d.observe_failure(T0 + 20 * MIN + i, None, None, ip(7), "invalid_api_key");
    }
    assert_eq!(of(&d.drain(), EventType::AuthFailureBurst).len(), 1);
}

#[test]
fn key_bursts_carry_the_keys_tenant_and_ip_bursts_their_single_tenant() {
    let d = detector(AnomalyConfig::default());
    for i in 0..25 {
        d.observe_failure(
            T0 + i,
            Some(&acme()),
            Some("key_b"),
            ip(i as u32),
            "scope_denied",
        );
    }
    let events = d.drain();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].data["key_id"], "key_b");
    assert_eq!(events[0].tenant, Some(acme()));
    assert_eq!(events[0].data["reasons"]["scope_denied"], 20);
    // One IP against one tenant: the tenant's; mixed with unknown keys: none.
    let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    for i in 0..20 {
        d.observe_failure(
            T0 + i,
            Some(&acme()),
            None,
            v6(&format!("2001:db8::{i:x}")),
            "r",
        );
    }
    let events = d.drain();
    assert_eq!(events.len(), 1, "one /64: {events:?}");
    assert_eq!(events[0].data["ip"], "2001:db8::/64");
    assert_eq!(events[0].tenant, Some(acme()));
    for i in 0..20 {
        let tenant = (i % 2 == 0).then(acme);
        d.observe_failure(T0 + i, tenant.as_ref(), None, ip(99), "r");
    }
    let events = d.drain();
    assert_eq!((events.len(), &events[0].tenant), (1, &None));
}

#[test]
fn a_new_ip_raises_once_and_a_known_ip_never() {
    let d = detector(AnomalyConfig::default());
    let t = acme();
    // The first IP, and others in the first hour, are the key's baseline.
    d.observe_request(T0, &t, "key_c", ip(1));
    d.observe_request(T0 + 10 * MIN, &t, "key_c", ip(2));
    assert!(d.drain().is_empty());
    for i in 0..100 {
        d.observe_request(T0 + 2 * HOUR + i, &t, "key_c", ip(1 + (i % 2) as u32));
    }
    assert!(d.drain().is_empty(), "known IPs never raise");
    d.observe_request(T0 + 2 * HOUR, &t, "key_c", ip(3));
    d.observe_request(T0 + 2 * HOUR + 1, &t, "key_c", ip(3));
    let events = d.drain();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventType::AnomalyNewIp);
    assert_eq!(events[0].tenant, Some(acme()));
    assert_eq!(events[0].data["key_id"], "key_c");
    assert_eq!(events[0].data["ip"], "10.0.0.3");
    assert!(events[0].data["first_seen"].is_string());
    // Another new IP in the same episode is learnt quietly; after the debounce one raises.
    d.observe_request(T0 + 2 * HOUR + MIN, &t, "key_c", ip(4));
    assert!(d.drain().is_empty());
    d.observe_request(T0 + 3 * HOUR, &t, "key_c", ip(5));
    assert_eq!(d.drain().len(), 1);
    // An IP unseen for 30 days is new again (the key stayed in use from another IP).
    for day in 1..=31 {
        d.observe_request(T0 + 2 * HOUR + day * DAY, &t, "key_c", ip(1));
        d.tick(T0 + 2 * HOUR + day * DAY);
    }
    assert!(d.drain().is_empty());
    d.observe_request(T0 + 3 * HOUR + 31 * DAY, &t, "key_c", ip(2));
    assert_eq!(of(&d.drain(), EventType::AnomalyNewIp).len(), 1);
}

#[test]
fn ips_per_key_are_bounded() {
    let config = AnomalyConfig {
        max_ips_per_key: 4,
        ..AnomalyConfig::default()
    };
    let d = detector(config);
    for i in 0..100 {
        d.observe_request(T0 + i, &acme(), "key_d", ip(i as u32));
    }
    d.keys
        .with("key_d", || unreachable!(), |k| assert_eq!(k.ip_count(), 4));
}

#[test]
fn rate_limited_requests_aggregate_per_key_and_window() {
    let d = detector(AnomalyConfig::default());
    for i in 0..37 {
        d.observe_rate_limited(T0 + i * 100, &acme(), "key_e");
    }
    for i in 0..5 {
        d.observe_rate_limited(T0 + i * 100, &acme(), "key_f");
    }
    d.tick(T0 + 30_000);
    assert!(d.drain().is_empty(), "the window is still open");
    d.tick(T0 + MIN);
    d.tick(T0 + MIN + 500);
    let mut events = d.drain();
    events.sort_by(|a, b| a.data["key_id"].as_str().cmp(&b.data["key_id"].as_str()));
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e.kind == EventType::RatelimitExceeded)
    );
    assert_eq!(events[0].data["limited"], 37);
    assert_eq!(events[1].data["limited"], 5);
    assert_eq!(events[0].tenant, Some(acme()));
    assert_eq!(events[0].data["window_seconds"], 60);
    for i in 0..3 {
        d.observe_rate_limited(T0 + MIN + 1000 + i, &acme(), "key_e");
    }
    // A tick that skipped windows still closes the last one.
    d.tick(T0 + 5 * MIN);
    let events = d.drain();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["limited"], 3);
}

#[test]
fn revoked_key_use_raises_once_per_episode() {
    let d = detector(AnomalyConfig::default());
    for i in 0..1000 {
        d.observe_revoked_use(T0 + i * 100, &acme(), "key_g", "expired");
    }
    let events = d.drain();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventType::AnomalyRevokedKeyUsed);
    assert_eq!(
        events[0].data,
        json!({"key_id": "key_g", "state": "expired"})
    );
    d.observe_revoked_use(T0 + HOUR, &acme(), "key_g", "revoked");
    assert_eq!(d.drain()[0].data["state"], "revoked");
}

#[test]
fn memory_stays_bounded_with_a_million_keys_and_ips() {
    let d = detector(AnomalyConfig::default());
    let mut id = String::new();
    for i in 0..1_000_000u32 {
        use std::fmt::Write;
        id.clear();
        let _ = write!(id, "key_{i:026}");
        d.observe_request(T0 + u64::from(i), &acme(), &id, None);
        d.observe_failure(T0 + u64::from(i), None, None, ip(i), "invalid_api_key");
    }
    let tracked = d.tracked();
    assert!(tracked.keys <= 100_000, "{tracked:?}");
    assert!(tracked.keys >= 80_000, "{tracked:?}");
    assert!(tracked.ips <= 100_000, "{tracked:?}");
    // The newest key is still there.
    assert!(d.keys.with(id.as_str(), || unreachable!(), |_| true));
}

#[test]
fn the_queue_is_bounded_and_counts_drops() {
    let config = AnomalyConfig {
        max_queued: 5,
        failure_burst_threshold: 1,
        ..AnomalyConfig::default()
    };
    let d = detector(config);
    for i in 0..12 {
        d.observe_failure(T0, None, None, ip(i), "r");
    }
    assert_eq!(d.tracked().queued, 5);
    assert_eq!(d.tracked().dropped, 7);
    assert_eq!(d.drain().len(), 5);
    assert_eq!(d.tracked().queued, 0);
}

#[test]
fn disabled_detects_nothing() {
    let d = detector(AnomalyConfig {
        enabled: false,
        failure_burst_threshold: 1,
        ..AnomalyConfig::default()
    });
    d.observe_failure(T0, None, Some("key_h"), ip(1), "r");
    d.observe_revoked_use(T0, &acme(), "key_h", "revoked");
    d.tick(T0 + MIN);
    assert!(d.drain().is_empty());
    assert_eq!(d.tracked(), Tracked::default());
}

#[test]
fn unix_millis_and_client_nets() {
    let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    assert_eq!(unix_millis(t), 1_700_000_000_000);
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(client_net(mapped), ip(1).unwrap());
    assert_eq!(clip("aé", 2), "a");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Bursts of one IP are at least the debounce apart, whatever the failures' timing.
    #[test]
    fn bursts_are_debounced(gaps in proptest::collection::vec(0u64..120_000, 1..400)) {
        let config = AnomalyConfig {
            failure_burst_threshold: 3,
            debounce_seconds: 60,
            ..AnomalyConfig::default()
        };
        let d = detector(config);
        let mut now = T0;
        let mut raised = Vec::new();
        for gap in gaps {
            now += gap;
            d.observe_failure(now, None, None, ip(1), "r");
            if !d.drain().is_empty() {
                raised.push(now);
            }
        }
        prop_assert!(raised.windows(2).all(|w| w[1] - w[0] >= 60_000), "{raised:?}");
    }
}

/// `cargo test -p portcullis-events --release --lib -- --ignored --nocapture observe_request_cost`
///
/// Prints the cost of `observe_request` for known keys and IPs, and as a ratio to a baseline
/// measured in the same run: one lookup and increment in a `Mutex<HashMap<Box<str>, u64>>`.
#[test]
#[ignore = "a micro benchmark; run it in release"]
fn observe_request_cost() {
    use std::{collections::HashMap, hint::black_box, sync::Mutex, time::Instant};
    let d = detector(AnomalyConfig::default());
    let keys: Vec<String> = (0..1000).map(|i| format!("key_{i:026}")).collect();
    let t = acme();
    for (i, k) in keys.iter().enumerate() {
        d.observe_request(T0, &t, k, ip(i as u32 % 4));
    }
    let baseline: Mutex<HashMap<Box<str>, u64>> =
        Mutex::new(keys.iter().map(|k| (k.as_str().into(), 0)).collect());
    let n = 5_000_000u64;
    let (mut ours, mut base) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let start = Instant::now();
        for i in 0..n {
            let k = &keys[(i % 1000) as usize];
            if let Some(c) = baseline.lock().unwrap().get_mut(black_box(k.as_str())) {
                *c += 1;
            }
        }
        base = base.min(start.elapsed().as_nanos() as f64 / n as f64);
        let start = Instant::now();
        for i in 0..n {
            let k = &keys[(i % 1000) as usize];
            d.observe_request(T0 + i / 1000, &t, black_box(k), ip((i % 4) as u32));
        }
        ours = ours.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    assert!(d.drain().is_empty());
    println!(
        "observe_request: {ours:.1} ns/op; baseline (Mutex<HashMap> lookup + increment): \
         {base:.1} ns/op; ratio {:.2} (1000 known keys, 4 IPs each, one thread)",
        ours / base
    );
}
