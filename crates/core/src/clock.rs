//! Time is injected so that expiry and grace periods are tested without sleeping.
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// A source of the current time. All timestamps portcullis stores have whole-second precision.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;

    /// The current time at the clock's full precision, for audit records, whose order within a
    /// second matters to a reader (their sequence numbers order them anyway). Defaults to
    /// [`now`](Clock::now).
    fn precise_now(&self) -> OffsetDateTime {
        self.now()
    }
}

/// Truncates a timestamp to whole seconds (the precision of every stored time).
pub fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        whole_seconds(OffsetDateTime::now_utc())
    }

    fn precise_now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Mutex::new(whole_seconds(start)))
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }

    pub fn set(&self, to: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = whole_seconds(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
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
}
