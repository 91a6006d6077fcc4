//! The GCRA limiter: one theoretical arrival time (TAT) per key.
use std::{fmt, hash::Hash};

use crate::{
    Nanos, Quota, ceil_seconds,
    shards::{Expiring, ShardedMap},
};

/// Outcome of one check, with what the IETF headers and `Retry-After` need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the request passes.
    pub allowed: bool,
    /// The quota's requests per window (`q` of `RateLimit-Policy`).
    pub limit: u32,
    /// Requests that would still pass at this instant after this check (`r` of `RateLimit`):
    /// `floor((burst*T - (tat - now)) / T)`; 0 when denied.
    pub remaining: u32,
    /// Seconds until the bucket is full again, rounded up (`t` of `RateLimit`).
    pub reset_seconds: u64,
    /// 0 when allowed; otherwise seconds until one request passes, rounded up (at least 1).
    pub retry_after_seconds: u64,
}

/// One GCRA step: the outcome, and the TAT to store when the request passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What to answer.
    pub outcome: Outcome,
    /// The new TAT when allowed; `None` when denied (the stored TAT stays as it is).
    pub new_tat: Option<Nanos>,
}

/// The pure GCRA step for a key whose stored TAT is `tat` (`None`: no state) at `now`.
///
/// `new_tat = max(tat, now) + T`; allowed iff `new_tat - now <= burst * T`. [`Limiter`] applies
/// it under a lock; it is public so that another store (e.g. a shared one) can apply the same
/// arithmetic.
pub fn decide(quota: &Quota, tat: Option<Nanos>, now: Nanos) -> Decision {
    let interval = quota.emission_interval();
    let capacity = quota.capacity();
    let start = tat.map_or(now, |tat| tat.max(now));
    // An overflow of the time line denies (fail closed) instead of wrapping.
    let new_tat = start
        .checked_add(interval)
        .filter(|new_tat| new_tat.saturating_sub(now) <= capacity);
    let (tat_after, retry_after_seconds) = match new_tat {
        Some(new_tat) => (new_tat, 0),
        None => {
            let wait = start
                .saturating_add(interval)
                .saturating_sub(capacity)
                .saturating_sub(now);
            (start, ceil_seconds(wait).max(1))
        }
    };
    let ahead = tat_after.saturating_sub(now);
    let remaining = (capacity.saturating_sub(ahead) / interval).min(u64::from(quota.burst()));
    Decision {
        outcome: Outcome {
            allowed: new_tat.is_some(),
            limit: quota.requests(),
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_seconds: ceil_seconds(ahead),
            retry_after_seconds,
        },
        new_tat,
    }
}

/// The state of one key is its TAT; from the TAT on its bucket is full, the same as no state.
impl Expiring for Nanos {
    fn expires_at(&self) -> Nanos {
        *self
    }
}

/// A GCRA limiter keyed by `K`, holding at most `max_keys` keys.
///
/// The quota is passed to each [`check`](Limiter::check), so keys may have different quotas,
/// and a key whose quota changes keeps its TAT: the new quota applies from the next check.
/// State lives in up to 16 shards, each a `Mutex<HashMap>`; a new key in a full shard evicts
/// that shard's idle keys, or else the key whose bucket is closest to full (evicting a busy key
/// forgets what it used of its bucket; the one closest to full loses the least). Memory never
/// grows past `max_keys` keys.
pub struct Limiter<K> {
    keys: ShardedMap<K, Nanos>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter for at most `max_keys` keys (0 counts as 1).
    pub fn new(max_keys: usize) -> Self {
        Limiter {
            keys: ShardedMap::new(max_keys),
        }
    }

    /// Checks and, when allowed, consumes one request for `key` under `quota` at `now`.
    pub fn check(&self, key: &K, quota: &Quota, now: Nanos) -> Outcome {
        self.keys.update(key, now, |tat| {
            let decision = decide(quota, tat, now);
            (decision.new_tat, decision.outcome)
        })
    }

    /// Removes the state of keys that are idle at `now` (their bucket is full again; such
    /// state is identical to no state). Returns how many were removed.
    pub fn evict_idle(&self, now: Nanos) -> usize {
        self.keys.evict_idle(now)
    }
}

impl<K> Limiter<K> {
    /// Keys with state (idle ones included until evicted).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound on [`len`](Limiter::len).
    pub fn max_keys(&self) -> usize {
        self.keys.max_keys()
    }
}

impl<K> fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("len", &self.len())
            .field("max_keys", &self.max_keys())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NANOS_PER_SECOND as S;

    #[test]
    fn decide_from_no_state_and_when_denied() {
        // 10 per second (T = 100 ms), burst 2.
        let q = Quota::new(10, 1, 2).unwrap();
        let first = decide(&q, None, 5 * S);
        assert_eq!(first.new_tat, Some(5 * S + S / 10));
        assert_eq!(
            first.outcome,
            Outcome {
                allowed: true,
                limit: 10,
                remaining: 1,
                reset_seconds: 1,
                retry_after_seconds: 0
            }
        );
        // TAT 200 ms ahead: full. The next passes at TAT + T - 2T = now + 100 ms.
        let denied = decide(&q, Some(5 * S + S / 5), 5 * S);
        assert_eq!(denied.new_tat, None);
        assert_eq!(
            denied.outcome,
            Outcome {
                allowed: false,
                limit: 10,
                remaining: 0,
                reset_seconds: 1,
                retry_after_seconds: 1
            }
        );
        // A TAT in the past is the same as no state.
        assert_eq!(decide(&q, Some(S), 5 * S), first);
    }

    #[test]
    fn the_end_of_the_time_line_denies() {
        let q = Quota::new(1, 1, 1).unwrap();
        let d = decide(&q, None, u64::MAX - 10);
        assert!(!d.outcome.allowed);
        assert_eq!(d.new_tat, None);
        assert!(d.outcome.retry_after_seconds >= 1);
    }

    #[test]
    fn debug_shows_size_only() {
        let limiter = Limiter::<u8>::new(4);
        limiter.check(&1, &Quota::new(1, 1, 1).unwrap(), 0);
        assert_eq!(format!("{limiter:?}"), "Limiter { len: 1, max_keys: 4 }");
    }
}
