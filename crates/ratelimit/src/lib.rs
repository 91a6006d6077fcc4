//! portcullis-ratelimit: local rate limiting without I/O.
//!
//! - [`Limiter`]: a GCRA limiter keyed by anything hashable (a key id, a tenant, a client address).
//! - [`FailureTracker`]: counts failed authentications per client and blocks brute force.
//! - [`policy_header_value`] / [`ratelimit_header_value`]: the `RateLimit-Policy` and `RateLimit`
//!   header values of draft-ietf-httpapi-ratelimit-headers-10.
//!
//! Time is passed in by the caller as [`Nanos`]: nanoseconds on a monotonic time line the caller
//! chooses, at full resolution (the server uses its clock's `monotonic_nanos`, which tests drive
//! by hand in steps of any size). Whole seconds would be wrong: every request of a second would
//! arrive at the same instant and only the burst would pass. Nothing here reads a clock, sleeps
//! or spawns.
//!
//! # GCRA
//!
//! The generic cell rate algorithm keeps one number per key, the *theoretical arrival time* (TAT):
//! the time at which the key's bucket would be full again. A [`Quota`] of `requests` per
//! `per_seconds` with `burst` has the emission interval `T = per_seconds * 1e9 / requests` ns
//! (integer division) and the capacity `burst * T`. A request at `now` computes
//! `new_tat = max(tat, now) + T` (no state counts as `tat = now`) and passes iff
//! `new_tat - now <= burst * T`; only a passing request stores `new_tat`, a denied one consumes
//! nothing. So from idle exactly `burst` requests pass at one instant, and then one more every `T`.
//!
//! A key whose TAT is not after `now` has a full bucket, which is the same as having no state:
//! such entries are dropped by `evict_idle` and first when memory is short. Memory is bounded by
//! the `max_keys` given at construction; see [`Limiter`].
//!
//! Arithmetic is saturating on `u64`; no input panics. At the very end of the `u64` time line
//! (about 584 years after the caller's origin) requests are denied rather than let through.
#![forbid(unsafe_code)]

mod failures;
mod gcra;
mod headers;
mod quota;
mod shards;

pub use failures::FailureTracker;
pub use gcra::{Decision, Limiter, Outcome, decide};
pub use headers::{
    MAX_POLICY_NAME_LEN, policy_header_value, ratelimit_header_value, valid_policy_name,
    write_policy_header_value, write_ratelimit_header_value,
};
pub use quota::{MAX_BURST, MAX_PER_SECONDS, MAX_REQUESTS, Quota, QuotaError};

/// Nanoseconds on the caller's monotonic time line.
pub type Nanos = u64;

/// Nanoseconds in one second.
pub const NANOS_PER_SECOND: Nanos = 1_000_000_000;

/// Whole seconds in `nanos`, rounded up.
pub(crate) fn ceil_seconds(nanos: Nanos) -> u64 {
    nanos.div_ceil(NANOS_PER_SECOND)
}
