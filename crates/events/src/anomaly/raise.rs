//! The events the detector raises: their data, message ids and times.
use std::net::{IpAddr, Ipv6Addr};

use portcullis_core::tenant::TenantId;
use serde_json::json;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    AnomalyConfig,
    state::{Burst, Counts, Spike},
};
use crate::model::{EventType, NewEvent};

/// Who a failure burst is about.
#[derive(Debug, Clone, Copy)]
pub(super) enum Subject<'a> {
    Key(&'a str),
    /// A client network (see [`client_net`]).
    Ip(IpAddr),
}

/// `anomaly.new_ip`, once per key and episode.
pub(super) fn new_ip(
    tenant: &TenantId,
    key_id: &str,
    net: IpAddr,
    now_ms: u64,
    start: u64,
) -> NewEvent {
    let data = json!({"key_id": key_id, "ip": net_str(net), "first_seen": stamp(now_ms)});
    let once = format!("{key_id}:{start}");
    let (tenant, at) = (Some(tenant.clone()), time_at(now_ms));
    NewEvent::once(EventType::AnomalyNewIp, tenant, at, &once, data)
}

/// `anomaly.revoked_key_used`, once per key and episode.
pub(super) fn revoked(
    tenant: &TenantId,
    key_id: &str,
    expired: bool,
    now_ms: u64,
    start: u64,
) -> NewEvent {
    let state = if expired { "expired" } else { "revoked" };
    let data = json!({"key_id": key_id, "state": state});
    let once = format!("{key_id}:{start}");
    let (tenant, at) = (Some(tenant.clone()), time_at(now_ms));
    NewEvent::once(EventType::AnomalyRevokedKeyUsed, tenant, at, &once, data)
}

/// `ratelimit.exceeded` for one key and window. Its message id is fresh, not derived from the
/// key and window: two nodes each report their own count for the same window.
pub(super) fn rate_limited(
    c: &AnomalyConfig,
    key_id: &str,
    tenant: Option<TenantId>,
    counts: Counts,
    now_ms: u64,
) -> NewEvent {
    let data = json!({
        "key_id": key_id,
        "limited": counts.limited,
        "window_seconds": c.window_seconds,
        "window_start": window_start(c, counts.window),
    });
    NewEvent::new(EventType::RatelimitExceeded, tenant, time_at(now_ms), data)
}

/// `anomaly.rate_spike` of a key (`key_id`) or else of `tenant`.
pub(super) fn spike(
    c: &AnomalyConfig,
    key_id: Option<&str>,
    tenant: Option<TenantId>,
    spike: Spike,
    window: u64,
) -> NewEvent {
    let mut data = json!({
        "scope": if key_id.is_some() { "key" } else { "tenant" },
        "requests": spike.requests,
        "baseline": (spike.baseline * 100.0).round() / 100.0,
        "spike_factor": c.spike_factor,
        "window_seconds": c.window_seconds,
        "window_start": window_start(c, window),
    });
    let start = spike.episode_start_ms;
    let once = match (key_id, &tenant) {
        (Some(key_id), _) => {
            data["key_id"] = key_id.into();
            format!("key:{key_id}:{start}")
        }
        (None, Some(t)) => format!("tenant:{t}:{start}"),
        (None, None) => format!("tenant::{start}"),
    };
    NewEvent::once(
        EventType::AnomalyRateSpike,
        tenant,
        time_at(start),
        &once,
        data,
    )
}

/// `auth.failure_burst` of a key or a client network.
pub(super) fn burst(
    c: &AnomalyConfig,
    subject: Subject<'_>,
    tenant: Option<TenantId>,
    burst: Burst,
    now_ms: u64,
) -> NewEvent {
    let mut data = json!({
        "failures": burst.failures,
        "reasons": burst.reasons,
        "window_seconds": c.window_seconds,
        "window_start": window_start(c, burst.window),
    });
    let start = burst.episode_start_ms;
    let once = match subject {
        Subject::Key(key_id) => {
            data["key_id"] = key_id.into();
            format!("key:{key_id}:{start}")
        }
        Subject::Ip(net) => {
            let net = net_str(net);
            let once = format!("ip:{net}:{start}");
            data["ip"] = net.into();
            once
        }
    };
    let at = time_at(now_ms);
    NewEvent::once(EventType::AuthFailureBurst, tenant, at, &once, data)
}

/// The tracked client network of `ip`: the IPv4 address, or the IPv6 /64.
pub(super) fn client_net(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

fn net_str(net: IpAddr) -> String {
    match net {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(super) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The event time of `ms`: whole seconds, like every stored time.
fn time_at(ms: u64) -> OffsetDateTime {
    let t = OffsetDateTime::from_unix_timestamp(i64::try_from(ms / 1000).unwrap_or(i64::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    portcullis_core::clock::whole_seconds(t)
}

fn stamp(ms: u64) -> String {
    time_at(ms).format(&Rfc3339).unwrap_or_default()
}

fn window_start(c: &AnomalyConfig, window: u64) -> String {
    stamp(window.saturating_mul(c.window_seconds).saturating_mul(1000))
}
