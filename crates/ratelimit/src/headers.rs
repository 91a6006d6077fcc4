//! Values of the `RateLimit-Policy` and `RateLimit` header fields of
//! draft-ietf-httpapi-ratelimit-headers-10 (structured fields: a list item per policy, the
//! policy name as an sf-string with integer parameters).
//!
//! `RateLimit-Policy: "name";q=100;w=60` states the quota: `q` = [`Quota::requests`] per
//! `w` = [`Quota::per_seconds`]. The draft has no parameter for GCRA's burst, so the burst is not
//! advertised; a client that keeps to `q` per `w` is never limited, and the `RateLimit` field
//! tells it what is left right now: `RateLimit: "name";r=42;t=12` with `r` = requests that would
//! still pass at once and `t` = seconds until the bucket is full again.
use std::fmt::{self, Write};

use crate::{Outcome, Quota};

/// Longest policy name.
pub const MAX_POLICY_NAME_LEN: usize = 40;

/// Largest integer of a structured field (RFC 9651: at most 15 digits).
const MAX_SF_INTEGER: u64 = 999_999_999_999_999;

/// Whether `name` is a policy name: 1 to 40 characters of `a-z`, `0-9`, `_` and `-`.
pub fn valid_policy_name(name: &str) -> bool {
    (1..=MAX_POLICY_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `"name";q=100;w=60`: the value of the `RateLimit-Policy` header for `quota`.
///
/// `name` should satisfy [`valid_policy_name`] (callers validate it at configuration time);
/// any other name is still written as a well-formed sf-string (quotes and backslashes escaped,
/// characters an sf-string cannot hold replaced by `_`).
pub fn policy_header_value(name: &str, quota: &Quota) -> String {
    let mut value = String::with_capacity(name.len() + 24);
    // Writing to a String cannot fail.
    let _ = write_policy_header_value(&mut value, name, quota);
    value
}

/// [`policy_header_value`] written into `out`.
pub fn write_policy_header_value(out: &mut dyn Write, name: &str, quota: &Quota) -> fmt::Result {
    sf_string(out, name)?;
    write!(out, ";q={};w={}", quota.requests(), quota.per_seconds())
}

/// `"name";r=42;t=12`: the value of the `RateLimit` header after `outcome`.
pub fn ratelimit_header_value(name: &str, outcome: &Outcome) -> String {
    let mut value = String::with_capacity(name.len() + 24);
    let _ = write_ratelimit_header_value(&mut value, name, outcome);
    value
}

/// [`ratelimit_header_value`] written into `out`.
pub fn write_ratelimit_header_value(
    out: &mut dyn Write,
    name: &str,
    outcome: &Outcome,
) -> fmt::Result {
    sf_string(out, name)?;
    write!(
        out,
        ";r={};t={}",
        outcome.remaining,
        outcome.reset_seconds.min(MAX_SF_INTEGER)
    )
}

/// Appends `text` as an sf-string: quoted, `"` and `\` escaped, and any character outside
/// visible ASCII and space (which an sf-string cannot hold) replaced by `_`.
fn sf_string(out: &mut dyn Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.write_char('\\')?;
                out.write_char(c)?;
            }
            ' '..='~' => out.write_char(c)?,
            _ => out.write_char('_')?,
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(remaining: u32, reset_seconds: u64) -> Outcome {
        Outcome {
            allowed: true,
            limit: 100,
            remaining,
            reset_seconds,
            retry_after_seconds: 0,
        }
    }

    #[test]
    fn policy_names() {
        for good in ["default", "a", "per-key_2", &"x".repeat(40)] {
            assert!(valid_policy_name(good), "{good}");
        }
        for bad in ["", "Default", "a b", "a\"b", "é", "a.b", &"x".repeat(41)] {
            assert!(!valid_policy_name(bad), "{bad}");
        }
    }

    #[test]
    fn header_values() {
        let quota = Quota::new(100, 60, 20).unwrap();
        assert_eq!(
            policy_header_value("default", &quota),
            "\"default\";q=100;w=60"
        );
        assert_eq!(
            ratelimit_header_value("per-key", &outcome(42, 12)),
            "\"per-key\";r=42;t=12"
        );
        assert_eq!(
            ratelimit_header_value("default", &outcome(0, 0)),
            "\"default\";r=0;t=0"
        );
    }

    #[test]
    fn other_names_stay_well_formed() {
        let quota = Quota::new(1, 1, 1).unwrap();
        assert_eq!(
            policy_header_value("a\"b\\c", &quota),
            r#""a\"b\\c";q=1;w=1"#
        );
        assert_eq!(policy_header_value("é\n", &quota), "\"__\";q=1;w=1");
        assert_eq!(
            ratelimit_header_value("x", &outcome(1, u64::MAX)),
            "\"x\";r=1;t=999999999999999"
        );
    }
}
