//! What the detector remembers per key, per IP and per tenant, and the small state machines
//! (episodes, rate baselines, failure windows) the events come from. Nothing here allocates once
//! an entry exists, except when an event is raised or a new IP or failure reason is learnt.
use std::net::IpAddr;

use portcullis_core::tenant::TenantId;

use super::{config::Params, shards::Recency};

/// Distinct failure reasons counted per window per key or IP; further ones count as `other`.
const MAX_REASONS: usize = 8;
/// Longest failure reason kept (longer ones are cut at a character boundary).
pub(super) const MAX_REASON_LEN: usize = 64;

/// A condition that holds now and then; one event per episode. An episode starts when the
/// condition is seen outside one and ends `debounce` after the condition was last seen.
#[derive(Debug, Clone, Copy)]
pub(super) struct Episode {
    /// The start of the current or last episode.
    start: u64,
    /// When the condition was last seen; [`Episode::NONE`] before the first episode.
    last: u64,
}

impl Default for Episode {
    fn default() -> Self {
        Self {
            start: Self::NONE,
            last: Self::NONE,
        }
    }
}

impl Episode {
    const NONE: u64 = u64::MAX;

    /// The condition holds at `now`: returns the episode's start when this starts a new one
    /// (raise an event), `None` when it extends the current one.
    pub(super) fn hit(&mut self, now: u64, debounce_ms: u64) -> Option<u64> {
        if self.last != Self::NONE && now < self.last.saturating_add(debounce_ms) {
            self.last = self.last.max(now);
            return None;
        }
        self.start = now;
        self.last = now;
        Some(self.start)
    }
}

/// A rate's baseline: an EWMA of the requests per whole window.
#[derive(Debug, Clone, Copy)]
pub(super) struct RateTrack {
    /// The window the key or tenant was first seen in: partial, not part of the baseline.
    first_window: u64,
    /// Windows before this one are in the baseline.
    folded: u64,
    baseline: f64,
    windows: u32,
    spike: Episode,
}

/// A window whose requests were a spike, in a new episode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Spike {
    pub(super) requests: u64,
    pub(super) baseline: f64,
    pub(super) episode_start_ms: u64,
}

impl RateTrack {
    pub(super) fn new(first_window: u64) -> Self {
        Self {
            first_window,
            folded: first_window,
            baseline: 0.0,
            windows: 0,
            spike: Episode::default(),
        }
    }

    /// Closes `window` with `requests` (the windows between the last closed one and it had
    /// none); returns a spike that starts an episode.
    pub(super) fn close(
        &mut self,
        window: u64,
        requests: u64,
        p: &Params,
        now_ms: u64,
    ) -> Option<Spike> {
        if window < self.folded {
            return None;
        }
        if window == self.first_window {
            self.folded = window + 1;
            return None;
        }
        let empty = window - self.folded;
        if empty > 0 {
            let decay = (1.0 - p.alpha).powi(i32::try_from(empty.min(10_000)).unwrap_or(10_000));
            self.baseline *= decay;
            self.windows = self
                .windows
                .saturating_add(u32::try_from(empty).unwrap_or(u32::MAX));
        }
        let before = self.baseline;
        let count = requests as f64;
        let is_spike = self.windows >= p.warmup_windows
            && requests >= p.min_requests
            && count > p.spike_factor * before;
        self.baseline = if self.windows == 0 {
            count
        } else {
            p.alpha * count + (1.0 - p.alpha) * before
        };
        self.windows = self.windows.saturating_add(1);
        self.folded = window + 1;
        if !is_spike {
            return None;
        }
        self.spike.hit(now_ms, p.debounce_ms).map(|start| Spike {
            requests,
            baseline: before,
            episode_start_ms: start,
        })
    }
}

/// Requests and rate-limited requests of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) window: u64,
    pub(super) requests: u32,
    pub(super) limited: u32,
}

impl Counts {
    fn is_empty(&self) -> bool {
        self.requests == 0 && self.limited == 0
    }
}

/// Failures of one window, by reason, and the burst episode.
#[derive(Debug, Default)]
pub(super) struct Failures {
    window: u64,
    count: u32,
    reasons: Vec<(Box<str>, u32)>,
    other: u32,
    burst: Episode,
}

/// A burst that starts an episode: the window's failures so far, by reason.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Burst {
    pub(super) failures: u32,
    pub(super) reasons: serde_json::Map<String, serde_json::Value>,
    pub(super) window: u64,
    pub(super) episode_start_ms: u64,
}

impl Failures {
    /// Counts a failure; returns a burst when this one starts an episode.
    pub(super) fn record(
        &mut self,
        window: u64,
        reason: &str,
        now_ms: u64,
        p: &Params,
    ) -> Option<Burst> {
        if window > self.window {
            self.window = window;
            self.count = 0;
            self.other = 0;
            self.reasons.iter_mut().for_each(|(_, n)| *n = 0);
        }
        self.count = self.count.saturating_add(1);
        let room = self.reasons.len() < MAX_REASONS;
        match self.reasons.iter_mut().find(|(r, _)| &**r == reason) {
            Some((_, n)) => *n = n.saturating_add(1),
            None if room => self.reasons.push((reason.into(), 1)),
            None => self.other = self.other.saturating_add(1),
        }
        if self.count < p.burst_threshold {
            return None;
        }
        let start = self.burst.hit(now_ms, p.debounce_ms)?;
        let mut reasons: serde_json::Map<String, serde_json::Value> = self
            .reasons
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.to_string(), (*n).into()))
            .collect();
        if self.other > 0 {
            reasons.insert("other".into(), self.other.into());
        }
        Some(Burst {
            failures: self.count,
            reasons,
            window: self.window,
            episode_start_ms: start,
        })
    }
}

/// Everything known about one key.
#[derive(Debug)]
pub(super) struct KeyState {
    pub(super) tenant: Option<TenantId>,
    first_seen_ms: u64,
    last_seen_ms: u64,
    current: Counts,
    /// The last window with counts, not yet closed by a tick (empty: none).
    pending: Counts,
    pub(super) rate: RateTrack,
    /// Client networks (IPv4 address or IPv6 /64) and when each was last seen.
    ips: Vec<(IpAddr, u64)>,
    new_ip: Episode,
    /// Allocated at the key's first failure (most keys have none).
    failures: Option<Box<Failures>>,
    revoked: Episode,
}

impl Recency for KeyState {
    fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms
    }
}

impl KeyState {
    pub(super) fn new(tenant: Option<TenantId>, now_ms: u64, window: u64) -> Self {
        Self {
            tenant,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            current: Counts {
                window,
                requests: 0,
                limited: 0,
            },
            pending: Counts {
                window,
                requests: 0,
                limited: 0,
            },
            rate: RateTrack::new(window),
            ips: Vec::new(),
            new_ip: Episode::default(),
            failures: None,
            revoked: Episode::default(),
        }
    }

    /// Notes a use at `now` in `window` (moving on to it if it is a later one), and the tenant
    /// if none was known.
    pub(super) fn touch(&mut self, now_ms: u64, window: u64, tenant: Option<&TenantId>) {
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        if self.tenant.is_none() {
            self.tenant = tenant.cloned();
        }
        self.roll(window);
    }

    /// Moves the counting window on to `window`, keeping the last one with counts for the tick.
    pub(super) fn roll(&mut self, window: u64) {
        if window > self.current.window {
            if !self.current.is_empty() {
                self.pending = self.current;
            }
            self.current = Counts {
                window,
                requests: 0,
                limited: 0,
            };
        }
    }

    pub(super) fn count_request(&mut self) {
        self.current.requests = self.current.requests.saturating_add(1);
    }

    pub(super) fn count_limited(&mut self) {
        self.current.limited = self.current.limited.saturating_add(1);
    }

    /// The closed window's counts, once.
    pub(super) fn take_pending(&mut self) -> Option<Counts> {
        if self.pending.is_empty() {
            return None;
        }
        let pending = self.pending;
        self.pending.requests = 0;
        self.pending.limited = 0;
        Some(pending)
    }

    /// The key's failure counter.
    pub(super) fn failures(&mut self) -> &mut Failures {
        self.failures.get_or_insert_with(Box::default)
    }

    /// Notes the client network `net`; returns the episode start when it is a new IP that
    /// starts an episode.
    pub(super) fn see_ip(&mut self, net: IpAddr, now_ms: u64, p: &Params) -> Option<u64> {
        let learning = now_ms < self.first_seen_ms.saturating_add(p.learning_ms);
        let is_new = match self.ips.iter_mut().find(|(ip, _)| *ip == net) {
            Some((_, last)) => {
                let stale = now_ms >= last.saturating_add(p.ip_memory_ms);
                *last = (*last).max(now_ms);
                stale
            }
            None => {
                let first = self.ips.is_empty();
                if self.ips.len() >= p.max_ips {
                    let oldest = (0..self.ips.len()).min_by_key(|i| self.ips[*i].1);
                    if let Some(oldest) = oldest {
                        self.ips.swap_remove(oldest);
                    }
                }
                self.ips.push((net, now_ms));
                !first
            }
        };
        if !is_new || learning {
            return None;
        }
        self.new_ip.hit(now_ms, p.debounce_ms)
    }

    /// A use of the key while revoked or expired; returns the episode start when it starts one.
    pub(super) fn revoked_use(&mut self, now_ms: u64, p: &Params) -> Option<u64> {
        self.revoked.hit(now_ms, p.debounce_ms)
    }

    #[cfg(test)]
    pub(super) fn ip_count(&self) -> usize {
        self.ips.len()
    }
}

/// Who a client network's failures were against in the current window.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum TenantTag {
    #[default]
    Unknown,
    One(TenantId),
    /// Several tenants, or failures of no known tenant among them.
    Mixed,
}

/// The failures of one client network.
#[derive(Debug)]
pub(super) struct IpState {
    last_seen_ms: u64,
    tenant: TenantTag,
    tag_window: u64,
    pub(super) failures: Failures,
}

impl Recency for IpState {
    fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms
    }
}

impl IpState {
    pub(super) fn new(now_ms: u64, window: u64) -> Self {
        Self {
            last_seen_ms: now_ms,
            tenant: TenantTag::Unknown,
            tag_window: window,
            failures: Failures::default(),
        }
    }

    /// Notes a failure at `now` and its tenant.
    pub(super) fn touch(&mut self, now_ms: u64, window: u64, tenant: Option<&TenantId>) {
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        if window > self.tag_window {
            self.tag_window = window;
            self.tenant = TenantTag::Unknown;
        }
        self.tenant = match (std::mem::take(&mut self.tenant), tenant) {
            (TenantTag::Unknown, Some(t)) => TenantTag::One(t.clone()),
            (TenantTag::One(t), Some(new)) if t == *new => TenantTag::One(t),
            _ => TenantTag::Mixed,
        };
    }

    /// The tenant of the window's failures so far, if they were all against one.
    pub(super) fn tenant(&self) -> Option<TenantId> {
        match &self.tenant {
            TenantTag::One(t) => Some(t.clone()),
            _ => None,
        }
    }
}

/// A tenant's rate, fed by the tick with the sum of its keys' requests.
#[derive(Debug)]
pub(super) struct TenantState {
    pub(super) last_active_ms: u64,
    pub(super) rate: RateTrack,
}

impl Recency for TenantState {
    fn last_seen_ms(&self) -> u64 {
        self.last_active_ms
    }
}
