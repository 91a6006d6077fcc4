//! Rate limits of keys and tenants: `requests` per `per_seconds`, with bursts of up to `burst`.
//!
//! A key's own limit applies to that key; a tenant's limit applies across all its keys. The
//! gateway enforces both (GCRA), and the route's policy on top of a key's own limit: a key's own
//! limit can only make the route stricter for that key. A tenant's `max_key_rate_limit` bounds
//! the own limits of its keys ([`RateLimit::is_within`], see [`crate::ceiling`]).
//!
//! In JSON a limit is `{"requests": 100, "per_seconds": 60, "burst": 20}`; `burst` is optional
//! and defaults to `requests`, unknown fields are rejected. On the command line it is
//! `100/60` or `100/60:20` (see [`RateLimit`]'s `FromStr` and `Display`).
use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::ValidationError;

/// Largest `requests` of a limit.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// Longest window of a limit: one day.
pub const MAX_PER_SECONDS: u32 = 86_400;
/// Largest `burst` of a limit.
pub const MAX_BURST: u32 = 1_000_000;

const SHAPE: &str =
    "must be an object with integer fields requests and per_seconds, and optionally burst";

/// `requests` per `per_seconds`, up to `burst` at once.
///
/// Deserializing validates (so a stored or received value is always in range) and fills in a
/// missing `burst` with `requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Fields")]
pub struct RateLimit {
    pub requests: u32,
    pub per_seconds: u32,
    pub burst: u32,
}

/// The JSON form as received: `burst` may be missing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    requests: u32,
    per_seconds: u32,
    #[serde(default)]
    burst: Option<u32>,
}

impl TryFrom<Fields> for RateLimit {
    type Error = ValidationError;

    fn try_from(f: Fields) -> Result<Self, ValidationError> {
        RateLimit::new(f.requests, f.per_seconds, f.burst)
    }
}

impl RateLimit {
    /// A validated limit; `burst` defaults to `requests`.
    pub fn new(
        requests: u32,
        per_seconds: u32,
        burst: Option<u32>,
    ) -> Result<Self, ValidationError> {
        Self {
            requests,
            per_seconds,
            burst: burst.unwrap_or(requests),
        }
        .validate()
    }

    /// Checks the ranges: `requests` 1 to [`MAX_REQUESTS`], `per_seconds` 1 to
    /// [`MAX_PER_SECONDS`], `burst` 1 to [`MAX_BURST`].
    pub fn validate(self) -> Result<Self, ValidationError> {
        if !(1..=MAX_REQUESTS).contains(&self.requests) {
            return Err(ValidationError::InvalidRateLimit(
                "requests must be between 1 and 1000000",
            ));
        }
        if !(1..=MAX_PER_SECONDS).contains(&self.per_seconds) {
            return Err(ValidationError::InvalidRateLimit(
                "per_seconds must be between 1 and 86400",
            ));
        }
        if !(1..=MAX_BURST).contains(&self.burst) {
            return Err(ValidationError::InvalidRateLimit(
                "burst must be between 1 and 1000000",
            ));
        }
        Ok(self)
    }

    /// Does this limit allow no more than `ceiling`, over any span of time?
    ///
    /// Both parts must be within: the sustained rate (`requests / per_seconds`, compared
    /// exactly, without division) and the burst. Then for every span `t` the requests this
    /// limit admits (about `burst + t × rate`) are no more than the ceiling admits.
    pub fn is_within(&self, ceiling: &RateLimit) -> bool {
        let rate = u64::from(self.requests) * u64::from(ceiling.per_seconds);
        let ceiling_rate = u64::from(ceiling.requests) * u64::from(self.per_seconds);
        rate <= ceiling_rate && self.burst <= ceiling.burst
    }
}

impl fmt::Display for RateLimit {
    /// `requests/per_seconds:burst`, the form [`RateLimit::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.requests, self.per_seconds, self.burst)
    }
}

impl FromStr for RateLimit {
    type Err = ValidationError;

    /// Reads `REQUESTS/SECONDS` or `REQUESTS/SECONDS:BURST`, e.g. `100/60` or `100/60:20`.
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        const FORM: ValidationError = ValidationError::InvalidRateLimit(
            "must be REQUESTS/SECONDS or REQUESTS/SECONDS:BURST, e.g. 100/60 or 100/60:20",
        );
        let number = |t: &str| -> Result<u32, ValidationError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FORM);
            }
            // All digits: only too many of them fail, and such a number is out of range.
            Ok(t.parse().unwrap_or(u32::MAX))
        };
        let (rate, burst) = match s.trim().split_once(':') {
            Some((rate, burst)) => (rate, Some(number(burst)?)),
            None => (s.trim(), None),
        };
        let (requests, per_seconds) = rate.split_once('/').ok_or(FORM)?;
        Self::new(number(requests)?, number(per_seconds)?, burst)
    }
}

/// A rate limit as it arrives in a request body, checked when the request is validated.
///
/// It accepts any JSON value, so that a malformed limit (a wrong type, a missing or unknown
/// field, a number out of range) is answered with the stable code `invalid_rate_limit` rather
/// than a generic body error. A JSON `null` is not a `RateLimitInput` (it is `None` of the
/// surrounding `Option`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitInput(Result<RateLimit, ValidationError>);

impl RateLimitInput {
    /// The limit, or why it was refused.
    pub fn validate(self) -> Result<RateLimit, ValidationError> {
        self.0.and_then(RateLimit::validate)
    }
}

impl From<RateLimit> for RateLimitInput {
    fn from(limit: RateLimit) -> Self {
        Self(Ok(limit))
    }
}

impl<'de> Deserialize<'de> for RateLimitInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        // Serde would also read a struct from an array; only the object form is accepted.
        let fields = match value {
            Value::Object(_) => serde_json::from_value::<Fields>(value).ok(),
            _ => None,
        };
        Ok(Self(
            fields
                .ok_or(ValidationError::InvalidRateLimit(SHAPE))
                .and_then(RateLimit::try_from),
        ))
    }
}

/// Validates an optional limit of a request.
pub(crate) fn validate_opt(
    input: Option<RateLimitInput>,
) -> Result<Option<RateLimit>, ValidationError> {
    input.map(RateLimitInput::validate).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Result<RateLimit, ValidationError> {
        serde_json::from_str::<RateLimitInput>(json)
            .expect("any JSON value is an input")
            .validate()
    }

    fn rl(requests: u32, per_seconds: u32, burst: u32) -> RateLimit {
        RateLimit {
            requests,
            per_seconds,
            burst,
        }
    }

    #[test]
    fn json_input_defaults_burst_and_checks_ranges() {
        assert_eq!(
            input(r#"{"requests": 100, "per_seconds": 60}"#),
            Ok(rl(100, 60, 100))
        );
        assert_eq!(
            input(r#"{"requests": 100, "per_seconds": 60, "burst": 5}"#),
            Ok(rl(100, 60, 5))
        );
        assert_eq!(
            input(r#"{"requests": 1000000, "per_seconds": 86400, "burst": 1000000}"#),
            Ok(rl(1_000_000, 86_400, 1_000_000))
        );
        assert_eq!(
            input(r#"{"requests": 1, "per_seconds": 1, "burst": 1}"#),
            Ok(rl(1, 1, 1))
        );
        for bad in [
            r#"{"requests": 0, "per_seconds": 60}"#,
            r#"{"requests": 1000001, "per_seconds": 60, "burst": 1}"#,
            r#"{"requests": 10, "per_seconds": 0}"#,
            r#"{"requests": 10, "per_seconds": 86401}"#,
            r#"{"requests": 10, "per_seconds": 60, "burst": 0}"#,
            r#"{"requests": 10, "per_seconds": 60, "burst": 1000001}"#,
            r#"{"requests": -1, "per_seconds": 60}"#,
            r#"{"requests": 1.5, "per_seconds": 60}"#,
            r#"{"requests": "10", "per_seconds": 60}"#,
            r#"{"requests": 10}"#,
            r#"{"requests": 10, "per_seconds": 60, "window": 1}"#,
            r#"{"requests": 10, "per_seconds": 60, "burst": null, "x": 1}"#,
            r#"{"requests": 99999999999, "per_seconds": 60}"#,
            r#""100/60""#,
            r#"[100, 60]"#,
            r#"{}"#,
        ] {
            let e = input(bad).expect_err(bad);
            assert_eq!(e.code(), "invalid_rate_limit", "{bad}");
        }
    }

    #[test]
    fn errors_do_not_echo_values() {
        let e = input(r#"{"requests": 1234567, "per_seconds": 60, "sk_live_x": 1}"#)
            .expect_err("invalid");
        let text = e.to_string();
        assert!(
            !text.contains("1234567") && !text.contains("sk_live_x"),
            "{text}"
        );
    }

    #[test]
    fn stored_form_round_trips_and_is_validated() {
        let l = rl(100, 60, 20);
        let json = serde_json::to_string(&l).expect("json");
        assert_eq!(json, r#"{"requests":100,"per_seconds":60,"burst":20}"#);
        assert_eq!(serde_json::from_str::<RateLimit>(&json).ok(), Some(l));
        assert_eq!(
            serde_json::from_str::<RateLimit>(r#"{"requests":7,"per_seconds":1}"#).ok(),
            Some(rl(7, 1, 7))
        );
        assert!(serde_json::from_str::<RateLimit>(r#"{"requests":0,"per_seconds":1}"#).is_err());
        assert!(
            serde_json::from_str::<RateLimit>(r#"{"requests":1,"per_seconds":1,"z":1}"#).is_err()
        );
    }

    #[test]
    fn within_a_ceiling() {
        let ceiling = rl(100, 60, 20);
        assert!(rl(100, 60, 20).is_within(&ceiling), "equal");
        assert!(rl(1, 1, 1).is_within(&ceiling), "1/s is 60/min");
        assert!(!rl(2, 1, 1).is_within(&ceiling), "2/s is 120/min");
        assert!(
            rl(200, 120, 20).is_within(&ceiling),
            "the same rate in a longer window"
        );
        assert!(!rl(201, 120, 20).is_within(&ceiling));
        assert!(!rl(10, 60, 21).is_within(&ceiling), "burst above");
        assert!(!rl(1_000_000, 1, 1_000_000).is_within(&ceiling));
        let max = rl(MAX_REQUESTS, 1, MAX_BURST);
        assert!(max.is_within(&max), "no overflow at the largest values");
        assert!(!max.is_within(&rl(MAX_REQUESTS, MAX_PER_SECONDS, MAX_BURST)));
    }

    proptest::proptest! {
        /// `is_within` means: at no time does the limit admit more than its ceiling. Checked
        /// against the count a GCRA admits from idle within `t` seconds: `burst` at once, then
        /// one every `per_seconds / requests` (floor(burst + t × requests / per_seconds)).
        #[test]
        fn within_admits_no_more_at_any_time(
            r in 1u32..2_000, p in 1u32..3_600, b in 1u32..2_000,
            cr in 1u32..2_000, cp in 1u32..3_600, cb in 1u32..2_000,
            t in 0u64..100_000,
        ) {
            let (limit, ceiling) = (rl(r, p, b), rl(cr, cp, cb));
            let admitted = |l: RateLimit, t: u64| {
                u64::from(l.burst) + t * u64::from(l.requests) / u64::from(l.per_seconds)
            };
            if limit.is_within(&ceiling) {
                proptest::prop_assert!(admitted(limit, t) <= admitted(ceiling, t));
            } else {
                // Not within: over some span (at once, or a long one) it admits more.
                let long = u64::from(p) * u64::from(cp) * 2_001;
                proptest::prop_assert!(
                    admitted(limit, 0) > admitted(ceiling, 0)
                        || admitted(limit, long) > admitted(ceiling, long)
                );
            }
        }
    }

    #[test]
    fn text_form() {
        assert_eq!("100/60".parse(), Ok(rl(100, 60, 100)));
        assert_eq!(" 100/60:20 ".parse(), Ok(rl(100, 60, 20)));
        assert_eq!(rl(100, 60, 20).to_string(), "100/60:20");
        let l = rl(5, 86_400, 1);
        assert_eq!(l.to_string().parse(), Ok(l));
        for bad in [
            "",
            "100",
            "100/",
            "/60",
            "100/60:",
            "a/60",
            "100/60/1",
            "100/6o",
            "-1/60",
            "+1/60",
            "100 / 60",
            "0/60",
            "100/0",
            "100/86401",
            "100/60:0",
            "1000001/60",
            "99999999999999/60",
        ] {
            assert_eq!(
                bad.parse::<RateLimit>().err().map(|e| e.code()),
                Some("invalid_rate_limit"),
                "{bad:?}"
            );
        }
    }
}
