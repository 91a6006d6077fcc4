//! Time is injected so that expiry, grace periods and rate limits are tested without sleeping.
//!
//! A [`Clock`] gives two kinds of time: wall time ([`now`](Clock::now) in whole seconds for
//! stored times, [`precise_now`](Clock::precise_now) for audit records) and a monotonic time line
//! in nanoseconds ([`monotonic_nanos`](Clock::monotonic_nanos)) for rate limits and brute-force
//! windows. Limits need the full resolution: fed whole seconds, a limiter of 100 requests a
//! second sees every request of a second arrive at the same instant and admits only its burst.
use std::{
    sync::{LazyLock, Mutex},
    time::Instant,
};
use time::{Duration, OffsetDateTime};

/// A source of the current time. All timestamps portcullis stores have whole-second precision.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall time, truncated to whole seconds (the precision of every stored time).
    fn now(&self) -> OffsetDateTime;

    /// The current time at the clock's full precision, for audit records, whose order within a
    /// second matters to a reader (their sequence numbers order them anyway). Defaults to
    /// [`now`](Clock::now).
    fn precise_now(&self) -> OffsetDateTime {
        self.now()
    }

    /// Nanoseconds on a monotonic time line from an origin of the clock's choosing, at full
    /// resolution: never goes back, does not follow changes of the wall clock. Rate limiters and
    /// brute-force windows run on it.
    fn monotonic_nanos(&self) -> u64;
}

/// Truncates a timestamp to whole seconds (the precision of every stored time).
pub fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The origin of [`SystemClock`]'s monotonic time line: the first time it is read.
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The wall clock, and the operating system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        whole_seconds(OffsetDateTime::now_utc())
    }

    fn precise_now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn monotonic_nanos(&self) -> u64 {
        // u64 nanoseconds last 584 years from the origin.
        u64::try_from(ORIGIN.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that only moves when told to, at full resolution; for tests.
///
/// [`advance`](ManualClock::advance) moves wall and monotonic time alike, by any amount down to
/// a nanosecond; [`set`](ManualClock::set) moves wall time only (as an operator changing the
/// system clock would), except that a jump forward moves the monotonic time line by as much.
#[derive(Debug)]
pub struct ManualClock(Mutex<ManualTime>);

#[derive(Debug, Clone, Copy)]
struct ManualTime {
    wall: OffsetDateTime,
    monotonic: u64,
}

impl ManualClock {
    /// A clock at `start` (whole seconds), monotonic time 0.
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Mutex::new(ManualTime {
            wall: whole_seconds(start),
            monotonic: 0,
        }))
    }

    fn time(&self) -> std::sync::MutexGuard<'_, ManualTime> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock forward by `by` (a negative duration moves wall time back and leaves
    /// the monotonic time line where it is).
    pub fn advance(&self, by: Duration) {
        let mut t = self.time();
        t.wall += by;
        t.monotonic = t.monotonic.saturating_add(nanos(by));
    }

    /// Sets wall time to `to` (whole seconds).
    pub fn set(&self, to: OffsetDateTime) {
        let mut t = self.time();
        let to = whole_seconds(to);
        t.monotonic = t.monotonic.saturating_add(nanos(to - t.wall));
        t.wall = to;
    }
}

/// The nanoseconds of a forward move; 0 for a move back.
fn nanos(by: Duration) -> u64 {
    u64::try_from(by.whole_nanoseconds()).unwrap_or(if by.is_negative() { 0 } else { u64::MAX })
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        whole_seconds(self.time().wall)
    }

    fn precise_now(&self) -> OffsetDateTime {
        self.time().wall
    }

    fn monotonic_nanos(&self) -> u64 {
        self.time().monotonic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_stores_whole_seconds_and_audits_precisely() {
        let (stored, precise) = (SystemClock.now(), SystemClock.precise_now());
        assert_eq!(stored.nanosecond(), 0);
        assert!(precise >= stored && precise - stored < Duration::seconds(2));
        let manual = ManualClock::new(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(manual.precise_now(), manual.now());
    }

    #[test]
    fn the_system_monotonic_clock_has_sub_millisecond_resolution() {
        let a = SystemClock.monotonic_nanos();
        let mut b = SystemClock.monotonic_nanos();
        while b == a {
            b = SystemClock.monotonic_nanos();
        }
        assert!(b > a);
        std::thread::sleep(std::time::Duration::from_millis(3));
        let c = SystemClock.monotonic_nanos();
        // A clock truncated to seconds (or milliseconds) could not tell these apart.
        assert!(c - b >= 3_000_000 && c - b < 1_000_000_000, "{}", c - b);
        assert_ne!(
            c % 1_000_000,
            0,
            "nanosecond resolution (1 in a million to fail)"
        );
    }

    #[test]
    fn the_manual_clock_moves_at_full_resolution() {
        let start = OffsetDateTime::UNIX_EPOCH + Duration::seconds(100);
        let c = ManualClock::new(start + Duration::milliseconds(700));
        assert_eq!((c.now(), c.monotonic_nanos()), (start, 0));
        c.advance(Duration::milliseconds(250));
        c.advance(Duration::nanoseconds(7));
        assert_eq!(c.monotonic_nanos(), 250_000_007);
        assert_eq!(c.now(), start, "stored time stays whole seconds");
        assert_eq!(c.precise_now(), start + Duration::nanoseconds(250_000_007));
        c.advance(Duration::milliseconds(750));
        assert_eq!(c.now(), start + Duration::seconds(1));
        // Wall time set back: the monotonic line stays; set forward: it moves as much.
        c.set(start - Duration::seconds(10));
        assert_eq!(c.monotonic_nanos(), 1_000_000_007);
        c.set(start);
        assert_eq!(c.monotonic_nanos(), 11_000_000_007);
        c.advance(Duration::seconds(-5));
        assert_eq!(c.monotonic_nanos(), 11_000_000_007);
    }
}
