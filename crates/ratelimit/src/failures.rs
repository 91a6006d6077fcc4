//! Brute-force protection: failed authentications per client, counted in a fixed window.
//!
//! A client's window opens at its first failure and lasts `window_seconds`; the failure that
//! makes the count exceed `threshold` within the window blocks the client for
//! `cooldown_seconds`. After the cooldown the client starts afresh (count 0, no window).
//! Failures recorded while blocked neither count nor extend the block, so the `Retry-After` a
//! client was given stays true.
//!
//! A fixed window (rather than GCRA) makes "more than `threshold` failures within the window"
//! exact for failures counted from the window's start, with three numbers of state per client.
//! Its known limit: up to `2 * threshold` failures can pass unblocked around the end of one
//! window and the start of the next; over time a client still gets at most `threshold`
//! failures per window.
use std::{fmt, hash::Hash};

use crate::{
    NANOS_PER_SECOND, Nanos, ceil_seconds,
    shards::{Expiring, ShardedMap},
};

/// One client's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failures {
    /// Failures in the current window.
    count: u32,
    /// End of the current window (exclusive).
    window_end: Nanos,
    /// End of the block (exclusive); not blocked when `<= now`.
    blocked_until: Nanos,
}

/// Past the window and the block, a client's state is the same as none.
impl Expiring for Failures {
    fn expires_at(&self) -> Nanos {
        self.window_end.max(self.blocked_until)
    }
}

/// Counts failed authentications per client (e.g. an `IpAddr`); the failure after `threshold`
/// within `window_seconds` blocks the client for `cooldown_seconds`.
///
/// Holds at most `max_keys` clients; when full, idle clients are dropped first, then the one
/// whose window or block ends first (so blocked clients, whose cooldown usually outlasts a
/// window, are kept longest).
pub struct FailureTracker<K> {
    threshold: u32,
    window_seconds: u32,
    cooldown_seconds: u32,
    clients: ShardedMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> FailureTracker<K> {
    /// A tracker blocking the `threshold + 1`-th failure within `window_seconds` for
    /// `cooldown_seconds`, for at most `max_keys` clients. A window or cooldown of 0 counts as
    /// 1 second, `max_keys` 0 as 1; a threshold of 0 blocks on the first failure.
    pub fn new(
        threshold: u32,
        window_seconds: u32,
        cooldown_seconds: u32,
        max_keys: usize,
    ) -> Self {
        FailureTracker {
            threshold,
            window_seconds: window_seconds.max(1),
            cooldown_seconds: cooldown_seconds.max(1),
            clients: ShardedMap::new(max_keys),
        }
    }

    /// Records one failure of `key` at `now`; returns `Some(retry_after_seconds)` if the
    /// client is now blocked (by this failure or an earlier one).
    pub fn record_failure(&self, key: &K, now: Nanos) -> Option<u64> {
        let window = u64::from(self.window_seconds) * NANOS_PER_SECOND;
        let cooldown = u64::from(self.cooldown_seconds) * NANOS_PER_SECOND;
        self.clients.update(key, now, |state| {
            if let Some(blocked_until) = state.map(|s| s.blocked_until).filter(|&b| b > now) {
                return (None, Some(ceil_seconds(blocked_until - now)));
            }
            let (count, window_end) = match state {
                Some(s) if now < s.window_end => (s.count.saturating_add(1), s.window_end),
                _ => (1, now.saturating_add(window)),
            };
            if count > self.threshold {
                let blocked_until = now.saturating_add(cooldown);
                let blocked = Failures {
                    count: 0,
                    window_end: now,
                    blocked_until,
                };
                let retry_after = ceil_seconds(blocked_until - now).max(1);
                return (Some(blocked), Some(retry_after));
            }
            let counting = Failures {
                count,
                window_end,
                blocked_until: 0,
            };
            (Some(counting), None)
        })
    }

    /// `Some(retry_after_seconds)` (rounded up) while `key` is blocked at `now`.
    pub fn blocked(&self, key: &K, now: Nanos) -> Option<u64> {
        self.clients
            .get(key)
            .filter(|s| s.blocked_until > now)
            .map(|s| ceil_seconds(s.blocked_until - now))
    }

    /// Removes clients that are neither blocked nor within a window at `now`; returns how many.
    pub fn evict_idle(&self, now: Nanos) -> usize {
        self.clients.evict_idle(now)
    }
}

impl<K> FailureTracker<K> {
    /// Failures allowed within a window.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The window in seconds.
    pub fn window_seconds(&self) -> u32 {
        self.window_seconds
    }

    /// How long a block lasts, in seconds.
    pub fn cooldown_seconds(&self) -> u32 {
        self.cooldown_seconds
    }

    /// Clients with state (idle ones included until evicted).
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound on [`len`](FailureTracker::len).
    pub fn max_keys(&self) -> usize {
        self.clients.max_keys()
    }
}

impl<K> fmt::Debug for FailureTracker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureTracker")
            .field("threshold", &self.threshold)
            .field("window_seconds", &self.window_seconds)
            .field("cooldown_seconds", &self.cooldown_seconds)
            .field("len", &self.len())
            .field("max_keys", &self.max_keys())
            .finish()
    }
}
