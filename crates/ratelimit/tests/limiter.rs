//! The GCRA limiter on a manual time line: exact outcomes, sustained rates, keys, memory bounds.
use portcullis_ratelimit::{Limiter, NANOS_PER_SECOND as S, Nanos, Outcome, Quota};

fn quota(requests: u32, per_seconds: u32, burst: u32) -> Quota {
    Quota::new(requests, per_seconds, burst).unwrap()
}

fn allowed(limit: u32, remaining: u32, reset_seconds: u64) -> Outcome {
    Outcome {
        allowed: true,
        limit,
        remaining,
        reset_seconds,
        retry_after_seconds: 0,
    }
}

fn denied(limit: u32, reset_seconds: u64, retry_after_seconds: u64) -> Outcome {
    Outcome {
        allowed: false,
        limit,
        remaining: 0,
        reset_seconds,
        retry_after_seconds,
    }
}

#[test]
fn burst_then_one_per_interval_exactly() {
    // 6 per minute: T = 10 s, burst 3: capacity 30 s.
    let q = quota(6, 60, 3);
    let limiter = Limiter::new(100);
    let key = "k";
    assert_eq!(limiter.check(&key, &q, 0), allowed(6, 2, 10));
    assert_eq!(limiter.check(&key, &q, 0), allowed(6, 1, 20));
    assert_eq!(limiter.check(&key, &q, 0), allowed(6, 0, 30));
    // TAT = 30 s: the next passes at 30 + 10 - 30 = 10 s.
    assert_eq!(limiter.check(&key, &q, 0), denied(6, 30, 10));
    // A denied request consumes nothing: the same answer again.
    assert_eq!(limiter.check(&key, &q, 0), denied(6, 30, 10));
    // Rounded up: 7.5 s to wait says 8, 1 ns to wait says 1.
    assert_eq!(limiter.check(&key, &q, 2_500_000_000), denied(6, 28, 8));
    assert_eq!(limiter.check(&key, &q, 10 * S - 1), denied(6, 21, 1));
    // After T one more passes, and only one.
    assert_eq!(limiter.check(&key, &q, 10 * S), allowed(6, 0, 30));
    assert_eq!(limiter.check(&key, &q, 10 * S), denied(6, 30, 10));
    // TAT = 40 s: at 40 s the bucket is full again, as if the key were new.
    assert_eq!(limiter.check(&key, &q, 40 * S), allowed(6, 2, 10));
    let fresh = Limiter::new(1);
    assert_eq!(fresh.check(&key, &q, 40 * S), allowed(6, 2, 10));
}

#[test]
fn partial_refill_counts_whole_requests() {
    // 10 per second: T = 100 ms, burst 10.
    let q = quota(10, 1, 10);
    let limiter = Limiter::new(10);
    for _ in 0..10 {
        assert!(limiter.check(&1u8, &q, 0).allowed);
    }
    assert_eq!(limiter.check(&1, &q, 0), denied(10, 1, 1));
    // 350 ms later 3 requests are back: one is used, 2 remain.
    assert_eq!(limiter.check(&1, &q, 350_000_000), allowed(10, 2, 1));
    assert!(limiter.check(&1, &q, 350_000_000).allowed);
    assert!(limiter.check(&1, &q, 350_000_000).allowed);
    assert!(!limiter.check(&1, &q, 350_000_000).allowed);
}

/// Requests every `T / 2` from 0 to `end` (inclusive): exactly `burst + end / T` pass.
fn run_at_twice_the_rate(q: &Quota, end: Nanos) -> (u64, u64) {
    let t = q.emission_interval();
    assert_eq!(t % 2, 0, "choose a quota with an even interval");
    let limiter = Limiter::new(1);
    let (mut passed, mut now) = (0, 0);
    while now <= end {
        passed += u64::from(limiter.check(&(), q, now).allowed);
        now += t / 2;
    }
    (passed, u64::from(q.burst()) + end / t)
}

#[test]
fn sustained_rate_at_twice_the_quota_is_exact() {
    for (q, end) in [
        (quota(10, 1, 5), 3_600 * S),
        (quota(100, 60, 100), 86_400 * S),
        (quota(7, 3, 1), 1_000 * S),
        (quota(1_000, 1, 50), 60 * S),
    ] {
        let (passed, theory) = run_at_twice_the_rate(&q, end);
        assert_eq!(passed, theory, "{q:?}");
    }
    // After the burst is spent, exactly `requests` pass per window.
    let q = quota(10, 1, 5);
    let (until_3599, _) = run_at_twice_the_rate(&q, 3_599 * S);
    let (until_3600, _) = run_at_twice_the_rate(&q, 3_600 * S);
    assert_eq!(until_3600 - until_3599, 10);
}

#[test]
fn keys_are_independent() {
    let q = quota(1, 60, 1);
    let limiter = Limiter::new(100);
    assert!(limiter.check(&"a", &q, 0).allowed);
    assert!(!limiter.check(&"a", &q, 0).allowed);
    assert_eq!(limiter.check(&"b", &q, 0), allowed(1, 0, 60));
    assert_eq!(limiter.len(), 2);
}

#[test]
fn a_new_quota_reuses_the_tat() {
    let limiter = Limiter::new(10);
    // 10/s burst 5 (T = 100 ms): 5 at once leave TAT = 500 ms.
    let fast = quota(10, 1, 5);
    for _ in 0..5 {
        assert!(limiter.check(&"k", &fast, 0).allowed);
    }
    // Stricter: 1/s burst 1 (capacity 1 s). 500 ms + 1 s - 1 s = 500 ms to wait.
    let strict = quota(1, 1, 1);
    assert_eq!(limiter.check(&"k", &strict, 0), denied(1, 1, 1));
    assert_eq!(limiter.check(&"k", &strict, 500_000_000), allowed(1, 0, 1));
    // Looser: 100/s burst 100 (T = 10 ms, capacity 1 s); TAT is now 1.5 s.
    let loose = quota(100, 1, 100);
    assert_eq!(limiter.check(&"k", &loose, S), allowed(100, 49, 1));
}

#[test]
fn memory_stays_bounded() {
    let q = quota(1, 60, 1);
    let limiter = Limiter::new(100);
    for key in 0..1_000u32 {
        let now = Nanos::from(key) * 1_000;
        // A new key always passes, even when its state pushes out another's.
        assert!(limiter.check(&key, &q, now).allowed);
        assert!(limiter.len() <= 100);
    }
    assert_eq!(limiter.len(), 100);
    assert_eq!(limiter.max_keys(), 100);
}

#[test]
fn evict_idle_removes_exactly_the_idle_keys() {
    let limiter = Limiter::new(1_000);
    let q = quota(1, 1, 3); // T = 1 s
    for key in 0..50u32 {
        limiter.check(&key, &q, 0); // TAT 1 s
    }
    for key in 50..80u32 {
        for _ in 0..3 {
            limiter.check(&key, &q, 0); // TAT 3 s
        }
    }
    assert_eq!(limiter.evict_idle(S - 1), 0);
    assert_eq!(limiter.evict_idle(S), 50);
    assert_eq!(limiter.len(), 30);
    assert_eq!(limiter.evict_idle(3 * S - 1), 0);
    // A busy key still answers from its state.
    assert_eq!(limiter.check(&79, &q, S / 2), denied(1, 3, 1));
    assert_eq!(limiter.evict_idle(3 * S), 30);
    assert!(limiter.is_empty());
}

#[test]
fn concurrent_checks_never_exceed_the_burst() {
    let q = quota(1, 3_600, 100);
    let limiter = Limiter::new(16);
    let passed: u32 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..1_000)
                        .map(|_| u32::from(limiter.check(&"shared", &q, 5 * S).allowed))
                        .sum::<u32>()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(passed, 100);
}
