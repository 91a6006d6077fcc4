//! When a failed delivery is tried again: exponential backoff with full jitter, given up after a
//! window (24 h by default) from its first attempt.
//!
//! After the `n`-th failed attempt the next one waits a random time, uniform between 1 s and
//! `min(cap, base × 2^(n-1))` (whole seconds): with the defaults (base 10 s, cap 1 h) the
//! ceilings are 10 s, 20 s, 40 s, … 42 min 40 s, then 1 h for every later wait. "Full jitter"
//! spreads the retries of many deliveries that failed together (an endpoint that was down)
//! instead of sending them back in waves. An attempt that would fall after the window's end is
//! not made: the delivery is dead-lettered (kept, listed, redeliverable by hand).
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::SmallRng};
use time::OffsetDateTime;

/// The retry policy of webhook deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The ceiling of the first wait; each later one doubles it.
    pub base: Duration,
    /// The largest ceiling of one wait.
    pub cap: Duration,
    /// No attempt is made later than this after the first one.
    pub give_up_after: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(3_600),
            give_up_after: Duration::from_secs(86_400),
        }
    }
}

impl RetrySchedule {
    /// The longest wait after `failed` failed attempts (at least one second).
    pub fn ceiling(&self, failed: u32) -> Duration {
        let exp = failed.saturating_sub(1).min(63);
        let base = self.base.as_secs().max(1);
        let ceiling = base.checked_shl(exp).filter(|c| c >> exp == base);
        Duration::from_secs(ceiling.unwrap_or(u64::MAX).min(self.cap.as_secs()).max(1))
    }

    /// The wait before the next attempt after `failed` failed ones: uniform in
    /// `[1 s, ceiling(failed)]`, whole seconds.
    pub fn next_delay<R: Rng + ?Sized>(&self, failed: u32, rng: &mut R) -> Duration {
        Duration::from_secs(rng.random_range(1..=self.ceiling(failed).as_secs()))
    }

    /// When to try again after `failed` failed attempts, the last one ending at `now`, for a
    /// delivery whose first attempt was at `first`; `None` when that would be past the window:
    /// the delivery is dead.
    pub fn next_attempt_at<R: Rng + ?Sized>(
        &self,
        first: OffsetDateTime,
        now: OffsetDateTime,
        failed: u32,
        rng: &mut R,
    ) -> Option<OffsetDateTime> {
        let next = now + self.next_delay(failed, rng);
        (next <= first + self.give_up_after).then_some(next)
    }

    /// [`next_attempt_at`](Self::next_attempt_at) with a fresh random generator.
    pub fn next_attempt(
        &self,
        first: OffsetDateTime,
        now: OffsetDateTime,
        failed: u32,
    ) -> Option<OffsetDateTime> {
        self.next_attempt_at(first, now, failed, &mut SmallRng::from_os_rng())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_the_base_up_to_the_cap() {
        let s = RetrySchedule::default();
        let secs: Vec<u64> = (1..=11).map(|n| s.ceiling(n).as_secs()).collect();
        assert_eq!(
            secs,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(s.ceiling(0).as_secs(), 10);
        assert_eq!(s.ceiling(u32::MAX).as_secs(), 3600, "no overflow");
        let no_cap = RetrySchedule {
            cap: Duration::MAX,
            ..s
        };
        assert_eq!(no_cap.ceiling(200).as_secs(), u64::MAX, "saturates");
    }

    #[test]
    fn delays_are_jittered_within_their_ceiling() {
        let s = RetrySchedule::default();
        let mut rng = SmallRng::seed_from_u64(7);
        for failed in 1..=20 {
            let ceiling = s.ceiling(failed);
            let delays: Vec<Duration> = (0..200).map(|_| s.next_delay(failed, &mut rng)).collect();
            assert!(
                delays
                    .iter()
                    .all(|d| *d >= Duration::from_secs(1) && *d <= ceiling)
            );
            if ceiling.as_secs() >= 20 {
                let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
                assert!(distinct.len() > 5, "jittered, not fixed");
            }
        }
    }

    #[test]
    fn a_delivery_is_given_up_after_the_window() {
        let s = RetrySchedule::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let first = OffsetDateTime::UNIX_EPOCH;
        let (mut now, mut failed) = (first, 1);
        while let Some(next) = s.next_attempt_at(first, now, failed, &mut rng) {
            assert!(next > now && next <= first + s.give_up_after);
            now = next;
            failed += 1;
            assert!(failed < 10_000, "ends");
        }
        // Most of the day was used, with waits of at most an hour at the end.
        assert!(now > first + time::Duration::hours(22), "{now}");
        assert!(failed > 20, "{failed} attempts");
        assert_eq!(
            s.next_attempt_at(first, first + time::Duration::hours(24), 1, &mut rng),
            None
        );
        assert!(s.next_attempt(first, first, 1).is_some());
    }
}
