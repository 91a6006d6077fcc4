//! The brute-force tracker on a manual time line.
use portcullis_ratelimit::{FailureTracker, NANOS_PER_SECOND as S, Nanos};

/// 3 failures per 60 s allowed, the 4th blocks for 300 s.
fn tracker() -> FailureTracker<&'static str> {
    FailureTracker::new(3, 60, 300, 1_000)
}

#[test]
fn the_failure_past_the_threshold_blocks() {
    let t = tracker();
    for i in 0..3 {
        assert_eq!(t.record_failure(&"ip", i * S), None);
        assert_eq!(t.blocked(&"ip", i * S), None);
    }
    assert_eq!(t.record_failure(&"ip", 3 * S), Some(300));
    assert_eq!(t.blocked(&"ip", 3 * S), Some(300));
    // Rounded up while it lasts.
    assert_eq!(t.blocked(&"ip", 3 * S + S / 2), Some(300));
    assert_eq!(t.blocked(&"ip", 303 * S - 1), Some(1));
    // Others are not affected.
    assert_eq!(t.blocked(&"other", 3 * S), None);
    assert_eq!(t.record_failure(&"other", 3 * S), None);
}

#[test]
fn failures_while_blocked_do_not_extend_the_block() {
    let t = tracker();
    for _ in 0..4 {
        t.record_failure(&"ip", 0);
    }
    assert_eq!(t.record_failure(&"ip", 100 * S), Some(200));
    assert_eq!(t.record_failure(&"ip", 299 * S + 1), Some(1));
    assert_eq!(t.blocked(&"ip", 300 * S - 1), Some(1));
    assert_eq!(t.blocked(&"ip", 300 * S), None);
}

#[test]
fn after_the_cooldown_the_client_starts_afresh() {
    let t = tracker();
    for _ in 0..4 {
        t.record_failure(&"ip", 0);
    }
    assert_eq!(t.blocked(&"ip", 300 * S), None);
    for i in 0..3 {
        assert_eq!(t.record_failure(&"ip", 300 * S + i), None);
    }
    assert_eq!(t.record_failure(&"ip", 301 * S), Some(300));
}

#[test]
fn the_window_starts_at_the_first_failure_and_resets_after_it() {
    let t = tracker();
    // Three failures in the window opened at 0 (it ends at 60 s, exclusive).
    assert_eq!(t.record_failure(&"ip", 0), None);
    assert_eq!(t.record_failure(&"ip", 30 * S), None);
    assert_eq!(t.record_failure(&"ip", 60 * S - 1), None);
    // At 60 s a new window opens: three more pass, the fourth within it blocks.
    assert_eq!(t.record_failure(&"ip", 60 * S), None);
    assert_eq!(t.record_failure(&"ip", 61 * S), None);
    assert_eq!(t.record_failure(&"ip", 119 * S), None);
    assert_eq!(t.record_failure(&"ip", 120 * S - 1), Some(300));

    // A window opened late in time still lasts 60 s from its first failure.
    let t = tracker();
    let start: Nanos = 1_000 * S;
    for i in 0..3 {
        assert_eq!(t.record_failure(&"late", start + i * 19 * S), None);
    }
    assert_eq!(t.record_failure(&"late", start + 59 * S), Some(300));
}

#[test]
fn zero_threshold_blocks_the_first_failure_and_zero_durations_count_as_one_second() {
    let t = FailureTracker::new(0, 0, 0, 0);
    assert_eq!(
        (
            t.threshold(),
            t.window_seconds(),
            t.cooldown_seconds(),
            t.max_keys()
        ),
        (0, 1, 1, 1)
    );
    assert_eq!(t.record_failure(&1u8, 0), Some(1));
    assert_eq!(t.blocked(&1, S - 1), Some(1));
    assert_eq!(t.blocked(&1, S), None);
}

#[test]
fn evict_idle_keeps_counting_and_blocked_clients() {
    let t = tracker();
    t.record_failure(&"counting", 0); // window ends at 60 s
    for _ in 0..4 {
        t.record_failure(&"blocked", 10 * S); // blocked until 310 s
    }
    assert_eq!(t.len(), 2);
    assert_eq!(t.evict_idle(60 * S - 1), 0);
    assert_eq!(t.evict_idle(60 * S), 1);
    assert_eq!(t.blocked(&"blocked", 60 * S), Some(250));
    assert_eq!(t.evict_idle(310 * S - 1), 0);
    assert_eq!(t.evict_idle(310 * S), 1);
    assert!(t.is_empty());
}

#[test]
fn memory_stays_bounded() {
    let t = FailureTracker::new(0, 60, 300, 50);
    for ip in 0..500u32 {
        assert_eq!(t.record_failure(&ip, Nanos::from(ip)), Some(300));
        assert!(t.len() <= 50);
    }
    assert_eq!(t.len(), 50);

    // The bound wins over a block: in a tracker of one, a new client pushes out a blocked one.
    let t = FailureTracker::new(1, 60, 300, 1);
    t.record_failure(&"a", 0);
    assert_eq!(t.record_failure(&"a", 0), Some(300));
    assert_eq!(t.record_failure(&"b", S), None);
    assert_eq!(t.len(), 1);
    assert_eq!(t.blocked(&"a", S), None);
    assert_eq!(
        t.record_failure(&"b", 2 * S),
        Some(300),
        "b's count was kept"
    );
}

#[test]
fn debug_shows_settings_and_size_only() {
    let t = tracker();
    t.record_failure(&"secret-client", 0);
    let debug = format!("{t:?}");
    assert_eq!(
        debug,
        "FailureTracker { threshold: 3, window_seconds: 60, cooldown_seconds: 300, len: 1, max_keys: 1000 }"
    );
}
