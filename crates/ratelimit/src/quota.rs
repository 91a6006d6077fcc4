//! A validated rate: `requests` per `per_seconds`, with a burst.
use crate::{NANOS_PER_SECOND, Nanos};

/// Largest accepted `requests` and `burst`.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// Largest accepted `per_seconds` (one day).
pub const MAX_PER_SECONDS: u32 = 86_400;
/// Largest accepted `burst`.
pub const MAX_BURST: u32 = 1_000_000;

/// Why a quota was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// `requests` is outside `1..=1_000_000`.
    #[error("requests must be between 1 and {MAX_REQUESTS}")]
    InvalidRequests,
    /// `per_seconds` is outside `1..=86_400`.
    #[error("per_seconds must be between 1 and {MAX_PER_SECONDS}")]
    InvalidPeriod,
    /// `burst` is outside `1..=1_000_000`.
    #[error("burst must be between 1 and {MAX_BURST}")]
    InvalidBurst,
}

impl QuotaError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequests => "invalid_quota_requests",
            Self::InvalidPeriod => "invalid_quota_period",
            Self::InvalidBurst => "invalid_quota_burst",
        }
    }
}

/// `requests` per `per_seconds`, allowing `burst` requests at once (`burst >= 1`).
///
/// The sustained rate is one request per [`emission_interval`](Quota::emission_interval)
/// (`per_seconds / requests`); `burst` is how many may pass back to back from an idle state. A
/// burst equal to `requests` gives the familiar "N per window" behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    requests: u32,
    per_seconds: u32,
    burst: u32,
    /// Cached `per_seconds * 1e9 / requests`; always >= 1_000 ns given the bounds.
    interval: Nanos,
}

impl Quota {
    /// A quota of `requests` (1..=1_000_000) per `per_seconds` (1..=86_400) with `burst`
    /// (1..=1_000_000) requests allowed at once.
    pub fn new(requests: u32, per_seconds: u32, burst: u32) -> Result<Quota, QuotaError> {
        if !(1..=MAX_REQUESTS).contains(&requests) {
            return Err(QuotaError::InvalidRequests);
        }
        if !(1..=MAX_PER_SECONDS).contains(&per_seconds) {
            return Err(QuotaError::InvalidPeriod);
        }
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(QuotaError::InvalidBurst);
        }
        let interval = u64::from(per_seconds) * NANOS_PER_SECOND / u64::from(requests);
        Ok(Quota {
            requests,
            per_seconds,
            burst,
            interval,
        })
    }

    /// Requests allowed per window (the `q` of the IETF headers).
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The window in seconds (the `w` of the IETF headers).
    pub fn per_seconds(&self) -> u32 {
        self.per_seconds
    }

    /// How many requests may pass at once from an idle state.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The emission interval T = `per_seconds * 1e9 / requests` nanoseconds (rounded down): the
    /// sustained spacing between requests. At least 1 µs given the bounds.
    pub fn emission_interval(&self) -> Nanos {
        self.interval
    }

    /// The burst capacity `burst * T` in nanoseconds, saturating at `u64::MAX` (only quotas whose
    /// burst spans centuries get there).
    pub(crate) fn capacity(&self) -> Nanos {
        u64::from(self.burst).saturating_mul(self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_with_stable_codes() {
        assert!(Quota::new(1, 1, 1).is_ok());
        assert!(Quota::new(MAX_REQUESTS, MAX_PER_SECONDS, MAX_BURST).is_ok());
        let cases = [
            (Quota::new(0, 1, 1), "invalid_quota_requests"),
            (Quota::new(MAX_REQUESTS + 1, 1, 1), "invalid_quota_requests"),
            (Quota::new(1, 0, 1), "invalid_quota_period"),
            (
                Quota::new(1, MAX_PER_SECONDS + 1, 1),
                "invalid_quota_period",
            ),
            (Quota::new(1, 1, 0), "invalid_quota_burst"),
            (Quota::new(1, 1, MAX_BURST + 1), "invalid_quota_burst"),
        ];
        for (result, code) in cases {
            assert_eq!(result.map_err(|e| e.code()), Err(code));
        }
    }

    #[test]
    fn emission_interval_is_period_over_requests() {
        let q = Quota::new(10, 60, 5).unwrap();
        assert_eq!((q.requests(), q.per_seconds(), q.burst()), (10, 60, 5));
        assert_eq!(q.emission_interval(), 6 * NANOS_PER_SECOND);
        assert_eq!(q.capacity(), 30 * NANOS_PER_SECOND);
        assert_eq!(
            Quota::new(3, 1, 1).unwrap().emission_interval(),
            333_333_333
        );
        assert_eq!(
            Quota::new(MAX_REQUESTS, 1, 1).unwrap().emission_interval(),
            1_000
        );
        let widest = Quota::new(1, MAX_PER_SECONDS, MAX_BURST).unwrap();
        assert_eq!(widest.emission_interval(), 86_400 * NANOS_PER_SECOND);
        assert_eq!(widest.capacity(), u64::MAX);
    }

    #[test]
    fn error_messages_name_the_bounds() {
        assert_eq!(
            QuotaError::InvalidPeriod.to_string(),
            "per_seconds must be between 1 and 86400"
        );
    }
}
