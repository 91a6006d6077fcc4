//! Properties over random quotas and time lines: the GCRA bound, consistent outcomes, no panics.
use portcullis_ratelimit::{
    FailureTracker, Limiter, MAX_BURST, MAX_PER_SECONDS, MAX_REQUESTS, NANOS_PER_SECOND, Nanos,
    Quota, decide,
};
use proptest::prelude::*;

fn small_quota() -> impl Strategy<Value = Quota> {
    (1..=1_000u32, 1..=120u32, 1..=50u32).prop_map(|(r, p, b)| Quota::new(r, p, b).unwrap())
}

fn any_quota() -> impl Strategy<Value = Quota> {
    (
        prop_oneof![Just(1), Just(MAX_REQUESTS), 1..=MAX_REQUESTS],
        prop_oneof![Just(1), Just(MAX_PER_SECONDS), 1..=MAX_PER_SECONDS],
        prop_oneof![Just(1), Just(MAX_BURST), 1..=MAX_BURST],
    )
        .prop_map(|(r, p, b)| Quota::new(r, p, b).unwrap())
}

proptest! {
    /// Over any non-decreasing time line, what passes never exceeds `burst + elapsed / T`, and
    /// every outcome is consistent with the quota and the pure step.
    #[test]
    fn never_more_than_burst_plus_elapsed_over_t(
        q in small_quota(),
        start in 0..(1u64 << 62),
        // Gaps in units of T/4 so that bursts, waits and long idles all occur.
        gaps in prop::collection::vec(0..12u64, 1..300),
    ) {
        let t = q.emission_interval();
        let limiter = Limiter::new(4);
        let (mut now, mut passed, mut tat) = (start, 0u64, None::<Nanos>);
        let mut first = None;
        for gap in gaps {
            now += gap * (t / 4);
            let first = *first.get_or_insert(now);
            let outcome = limiter.check(&"k", &q, now);
            let step = decide(&q, tat, now);
            prop_assert_eq!(outcome, step.outcome);
            if let Some(new_tat) = step.new_tat {
                tat = Some(new_tat);
            }
            passed += u64::from(outcome.allowed);
            prop_assert!(passed <= u64::from(q.burst()) + (now - first) / t);
            prop_assert!(outcome.remaining < q.burst() || !outcome.allowed);
            prop_assert_eq!(outcome.limit, q.requests());
            prop_assert!(outcome.reset_seconds <= (u64::from(q.burst()) * t).div_ceil(NANOS_PER_SECOND));
            if outcome.allowed {
                prop_assert_eq!(outcome.retry_after_seconds, 0);
            } else {
                prop_assert_eq!(outcome.remaining, 0);
                prop_assert!(outcome.retry_after_seconds >= 1);
                // Waiting as told is enough, and a second less is not.
                let wait = outcome.retry_after_seconds * NANOS_PER_SECOND;
                prop_assert!(decide(&q, tat, now + wait).outcome.allowed);
                prop_assert!(!decide(&q, tat, now + wait - NANOS_PER_SECOND).outcome.allowed);
            }
        }
    }

    /// Any quota, any times (also backwards and at the ends of the time line), any keys: no
    /// panic, and the number of keys never passes the bound.
    #[test]
    fn no_panic_and_bounded_memory(
        quotas in prop::collection::vec(any_quota(), 1..4),
        max_keys in 0..40usize,
        ops in prop::collection::vec(
            (any::<u8>(), 0..4usize, prop_oneof![any::<u64>(), Just(0), Just(u64::MAX)], any::<bool>()),
            1..300,
        ),
    ) {
        let limiter = Limiter::new(max_keys);
        let tracker = FailureTracker::new(3, 60, 300, max_keys);
        for (key, quota, now, evict) in ops {
            let q = &quotas[quota % quotas.len()];
            let outcome = limiter.check(&key, q, now);
            prop_assert!(outcome.allowed == (outcome.retry_after_seconds == 0));
            tracker.record_failure(&key, now);
            tracker.blocked(&key, now);
            if evict {
                limiter.evict_idle(now);
                tracker.evict_idle(now);
            }
            prop_assert!(limiter.len() <= max_keys.max(1));
            prop_assert!(tracker.len() <= max_keys.max(1));
        }
    }

    /// The tracker blocks exactly when more than `threshold` failures fall in one window.
    #[test]
    fn tracker_matches_a_model(
        threshold in 0..6u32,
        gaps in prop::collection::vec(0..40u64, 1..100),
    ) {
        let (window, cooldown) = (60 * NANOS_PER_SECOND, 300 * NANOS_PER_SECOND);
        let tracker = FailureTracker::new(threshold, 60, 300, 8);
        let (mut now, mut window_end, mut count, mut blocked_until) = (0u64, 0u64, 0u32, 0u64);
        for gap in gaps {
            now += gap * NANOS_PER_SECOND / 2;
            let expected = if blocked_until > now {
                Some((blocked_until - now).div_ceil(NANOS_PER_SECOND))
            } else {
                if now >= window_end {
                    (window_end, count) = (now + window, 0);
                }
                count += 1;
                if count > threshold {
                    (blocked_until, window_end, count) = (now + cooldown, now, 0);
                    Some(300)
                } else {
                    None
                }
            };
            prop_assert_eq!(tracker.record_failure(&(), now), expected);
        }
    }
}
