//! Anomaly detection on the request path: pure, in memory, a few counter updates per request.
//!
//! The [`Detector`] watches, per key and per tenant, the request rate against an EWMA baseline
//! (`anomaly.rate_spike`), a key's client IPs (`anomaly.new_ip`), failure bursts per key and per
//! client IP (`auth.failure_burst`), uses of revoked or expired keys
//! (`anomaly.revoked_key_used`), and aggregates rate-limited requests per key and window
//! (`ratelimit.exceeded`). Each condition raises one event per episode (see
//! [`AnomalyConfig::debounce_seconds`]), never one per request.
//!
//! Time comes from the caller as Unix milliseconds (from the injected clock: [`unix_millis`]),
//! so tests need no sleeps. The gateway calls the `observe_*` methods on the request path (one
//! shard lock, a few integer updates, no allocation once the key and IP are known); a
//! background task calls [`Detector::tick`] and [`Detector::drain`] every second and publishes
//! what it drained. The state lives in memory only: after a restart baselines and IPs are learnt
//! again (no spike before `warmup_windows`, no new IP in the learning time).
//!
//! IPv6 clients are tracked by their /64 network (one host may use many addresses of it), IPv4
//! clients by address; an IPv4-mapped IPv6 address counts as the IPv4 address.
//!
//! Event data (times are RFC 3339, counts are integers, no secret is ever involved):
//! - `anomaly.rate_spike`: `{scope: "key", key_id, requests, baseline, spike_factor,
//!   window_seconds, window_start}`, or for a tenant `{scope: "tenant", …}` without `key_id`.
//! - `anomaly.new_ip`: `{key_id, ip, first_seen}` (`ip` is `a.b.c.d` or `xxxx:…::/64`).
//! - `auth.failure_burst`: `{key_id}` or `{ip}`, and `{failures, reasons: {reason: count},
//!   window_seconds, window_start}`: the window's failures when the burst was detected.
//! - `ratelimit.exceeded`: `{key_id, limited, window_seconds, window_start}`.
//! - `anomaly.revoked_key_used`: `{key_id, state: "revoked" | "expired"}`.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use portcullis_core::tenant::TenantId;
use time::OffsetDateTime;

use crate::model::NewEvent;

mod config;
mod raise;
mod shards;
mod state;
#[cfg(test)]
mod tests;

pub use config::{AnomalyConfig, AnomalyConfigError};

use config::Params;
use raise::{Subject, client_net, clip};
use shards::{Recency, Shards, lock};
use state::{IpState, KeyState, RateTrack, TenantState};

/// Longest key id kept (longer ones are cut at a character boundary).
const MAX_KEY_ID_LEN: usize = 128;

/// How many entries the detector holds now (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tracked {
    pub keys: usize,
    pub ips: usize,
    pub tenants: usize,
    /// Events raised and not drained yet.
    pub queued: usize,
    /// Events dropped because the queue was full, since the start.
    pub dropped: u64,
}

/// The anomaly detector; share it (`Arc`) between the request path and the task that ticks and
/// drains it. See the module documentation.
pub struct Detector {
    config: AnomalyConfig,
    p: Params,
    keys: Shards<Box<str>, KeyState>,
    ips: Shards<IpAddr, IpState>,
    tenants: Shards<TenantId, TenantState>,
    queue: Mutex<Vec<NewEvent>>,
    dropped: AtomicU64,
    /// The window of the last tick that closed windows.
    ticked: AtomicU64,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("config", &self.config)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch of `t` (0 before it): the time argument of the detector.
pub fn unix_millis(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

impl Detector {
    /// A detector with `config`, checked first.
    pub fn new(config: AnomalyConfig) -> Result<Self, AnomalyConfigError> {
        config.validate()?;
        Ok(Self {
            p: Params::new(&config),
            keys: Shards::new(config.max_tracked),
            ips: Shards::new(config.max_tracked),
            tenants: Shards::new(config.max_tracked),
            queue: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            ticked: AtomicU64::new(0),
            config,
        })
    }

    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    /// A request authenticated with `key_id` of `tenant` from `ip`: counts it in the key's rate
    /// (and so its tenant's) and checks the IP against the key's known ones.
    pub fn observe_request(
        &self,
        now_ms: u64,
        tenant: &TenantId,
        key_id: &str,
        ip: Option<IpAddr>,
    ) {
        if !self.config.enabled {
            return;
        }
        let key_id = clip(key_id, MAX_KEY_ID_LEN);
        let window = now_ms / self.p.window_ms;
        let net = ip.map(client_net);
        let new_ip = self.keys.with(
            key_id,
            || {
                (
                    key_id.into(),
                    KeyState::new(Some(tenant.clone()), now_ms, window),
                )
            },
            |k| {
                k.touch(now_ms, window, Some(tenant));
                k.count_request();
                net.and_then(|net| k.see_ip(net, now_ms, &self.p))
            },
        );
        if let (Some(start), Some(net)) = (new_ip, net) {
            self.push(vec![raise::new_ip(tenant, key_id, net, now_ms, start)]);
        }
    }

    /// A refused request. Pass `tenant` and `key_id` only when they are known (the key exists;
    /// the tenant is the key's), never as claimed by the client; `reason` is a reason code
    /// (`invalid_api_key`, `ip_not_allowed`, …). Counts towards the key's and the client IP's
    /// failure bursts.
    pub fn observe_failure(
        &self,
        now_ms: u64,
        tenant: Option<&TenantId>,
        key_id: Option<&str>,
        ip: Option<IpAddr>,
        reason: &str,
    ) {
        if !self.config.enabled {
            return;
        }
        let window = now_ms / self.p.window_ms;
        let reason = clip(reason, state::MAX_REASON_LEN);
        let mut events = Vec::new();
        if let Some(key_id) = key_id.map(|k| clip(k, MAX_KEY_ID_LEN)) {
            let burst = self.keys.with(
                key_id,
                || {
                    (
                        key_id.into(),
                        KeyState::new(tenant.cloned(), now_ms, window),
                    )
                },
                |k| {
                    k.touch(now_ms, window, tenant);
                    let burst = k.failures().record(window, reason, now_ms, &self.p)?;
                    Some((burst, k.tenant.clone()))
                },
            );
            if let Some((burst, tenant)) = burst {
                let subject = Subject::Key(key_id);
                events.push(raise::burst(&self.config, subject, tenant, burst, now_ms));
            }
        }
        if let Some(net) = ip.map(client_net) {
            let burst = self.ips.with(
                &net,
                || (net, IpState::new(now_ms, window)),
                |s| {
                    s.touch(now_ms, window, tenant);
                    let burst = s.failures.record(window, reason, now_ms, &self.p)?;
                    Some((burst, s.tenant()))
                },
            );
            if let Some((burst, tenant)) = burst {
                let subject = Subject::Ip(net);
                events.push(raise::burst(&self.config, subject, tenant, burst, now_ms));
            }
        }
        self.push(events);
    }

    /// A request of `key_id` refused by the rate limiter (call it besides `observe_request`
    /// if the request was counted there). Aggregated into one `ratelimit.exceeded` per key and
    /// window, raised by the tick that closes the window.
    pub fn observe_rate_limited(&self, now_ms: u64, tenant: &TenantId, key_id: &str) {
        if !self.config.enabled {
            return;
        }
        let key_id = clip(key_id, MAX_KEY_ID_LEN);
        let window = now_ms / self.p.window_ms;
        self.keys.with(
            key_id,
            || {
                (
                    key_id.into(),
                    KeyState::new(Some(tenant.clone()), now_ms, window),
                )
            },
            |k| {
                k.touch(now_ms, window, Some(tenant));
                k.count_limited();
            },
        );
    }

    /// A presented key that is revoked or expired (`revoked_or_expired`: `"expired"`; anything
    /// else is reported as `"revoked"`).
    pub fn observe_revoked_use(
        &self,
        now_ms: u64,
        tenant: &TenantId,
        key_id: &str,
        revoked_or_expired: &str,
    ) {
        if !self.config.enabled {
            return;
        }
        let key_id = clip(key_id, MAX_KEY_ID_LEN);
        let window = now_ms / self.p.window_ms;
        let start = self.keys.with(
            key_id,
            || {
                (
                    key_id.into(),
                    KeyState::new(Some(tenant.clone()), now_ms, window),
                )
            },
            |k| {
                k.touch(now_ms, window, Some(tenant));
                k.revoked_use(now_ms, &self.p)
            },
        );
        if let Some(start) = start {
            let expired = revoked_or_expired == "expired";
            self.push(vec![raise::revoked(tenant, key_id, expired, now_ms, start)]);
        }
    }

    /// Closes the windows that ended before `now` (at most one pass per window, however often it
    /// is called): folds their requests into the keys' and tenants' baselines, raises spikes and
    /// the aggregated `ratelimit.exceeded`, and forgets idle keys, IPs and tenants. Its cost is a
    /// pass over the tracked entries, one shard lock at a time, once per window.
    pub fn tick(&self, now_ms: u64) {
        if !self.config.enabled {
            return;
        }
        let cur = now_ms / self.p.window_ms;
        let last = self.ticked.load(Ordering::Acquire);
        if cur <= last
            || self
                .ticked
                .compare_exchange(last, cur, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let p = self.p;
        let mut events = Vec::new();
        let mut sums: HashMap<TenantId, u64> = HashMap::new();
        let key_idle = p.key_idle_ms();
        self.keys.retain(|key_id, k| {
            k.roll(cur);
            if let Some(c) = k.take_pending() {
                let requests = u64::from(c.requests);
                if let Some(spike) = k.rate.close(c.window, requests, &p, now_ms) {
                    let (key, tenant) = (Some(&**key_id), k.tenant.clone());
                    events.push(raise::spike(&self.config, key, tenant, spike, c.window));
                }
                if c.limited > 0 {
                    let tenant = k.tenant.clone();
                    events.push(raise::rate_limited(&self.config, key_id, tenant, c, now_ms));
                }
                if let (Some(t), true) = (&k.tenant, c.window + 1 == cur) {
                    match sums.get_mut(t) {
                        Some(sum) => *sum += requests,
                        None => {
                            sums.insert(t.clone(), requests);
                        }
                    }
                }
            }
            now_ms < k.last_seen_ms().saturating_add(key_idle)
        });
        let closed = cur - 1;
        for (tenant, requests) in sums {
            let spike = self.tenants.with(
                &tenant,
                || {
                    let state = TenantState {
                        last_active_ms: now_ms,
                        rate: RateTrack::new(closed),
                    };
                    (tenant.clone(), state)
                },
                |t| {
                    t.last_active_ms = now_ms;
                    t.rate.close(closed, requests, &p, now_ms)
                },
            );
            if let Some(spike) = spike {
                events.push(raise::spike(
                    &self.config,
                    None,
                    Some(tenant),
                    spike,
                    closed,
                ));
            }
        }
        self.tenants
            .retain(|_, t| now_ms < t.last_active_ms.saturating_add(key_idle));
        let ip_idle = p.ip_idle_ms();
        self.ips
            .retain(|_, s| now_ms < s.last_seen_ms().saturating_add(ip_idle));
        self.push(events);
    }

    /// The events raised since the last call, oldest first.
    pub fn drain(&self) -> Vec<NewEvent> {
        std::mem::take(&mut *lock(&self.queue))
    }

    /// How many keys, IPs, tenants and queued events the detector holds.
    pub fn tracked(&self) -> Tracked {
        Tracked {
            keys: self.keys.len(),
            ips: self.ips.len(),
            tenants: self.tenants.len(),
            queued: lock(&self.queue).len(),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn push(&self, events: Vec<NewEvent>) {
        if events.is_empty() {
            return;
        }
        let mut queue = lock(&self.queue);
        let room = self.config.max_queued.saturating_sub(queue.len());
        let dropped = events.len().saturating_sub(room);
        queue.extend(events.into_iter().take(room));
        drop(queue);
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }
}
