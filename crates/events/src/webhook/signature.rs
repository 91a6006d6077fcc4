//! The webhook signature (Stripe's scheme): `Portcullis-Signature: t=<unix seconds>,v1=<hex>`,
//! where the hex is HMAC-SHA256 keyed with the endpoint secret (the whole `whsec_…` string, as
//! UTF-8 bytes) over `{t}.{body}`. While a rolled secret's previous one is still valid, the
//! header carries one `v1=` per secret, newest first; a receiver accepts the request when any
//! of them matches a secret it holds.
//!
//! A receiver checks, with [`verify`]: the timestamp is within its tolerance of its own clock
//! ([`DEFAULT_TOLERANCE`], 5 minutes, unless it chooses otherwise: the bound on replays) and
//! one `v1` matches, compared in constant time. It must verify the raw body bytes it received,
//! before parsing them.
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header that carries the signature.
pub const HEADER: &str = "Portcullis-Signature";
/// The tolerance receivers are told to use: a timestamp further than this from the receiver's
/// clock (either way) is refused.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// The signature scheme's name in the header.
pub const SCHEME: &str = "v1";
/// Headers longer than this are refused unread.
pub const MAX_HEADER_LEN: usize = 2_048;
/// At most this many `v1` entries are looked at.
pub const MAX_SIGNATURES: usize = 8;

/// Why a signature was refused. The variants are for the receiver's logs; answer the sender
/// with a plain 400 whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The header is not `t=…,v1=…` (or too long).
    #[error("the signature header is malformed")]
    Malformed,
    /// The header has no `v1` signature.
    #[error("the signature header has no v1 signature")]
    NoSignature,
    /// The timestamp is further from now than the tolerance.
    #[error("the signature timestamp is outside the tolerance")]
    OutsideTolerance,
    /// No signature matches any of the secrets.
    #[error("no signature matches")]
    Mismatch,
}

fn mac(secret: &str, t: i64, body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// The header value for `body` sent at `t` (unix seconds), signed with one secret.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    sign_with(&[secret], t, body)
}

/// The header value signed with each of `secrets` (the current one first, then the previous
/// one during a roll's overlap).
pub fn sign_with(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut out = format!("t={t}");
    for s in secrets {
        out.push_str(",v1=");
        out.push_str(&hex::encode(mac(s, t, body)));
    }
    out
}

/// The timestamp and the `v1` signatures of a header.
fn parse(header: &str) -> Result<(i64, Vec<[u8; 32]>), VerifyError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(VerifyError::Malformed);
    }
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(VerifyError::Malformed)?;
        match k {
            "t" => {
                if t.is_some() || v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VerifyError::Malformed);
                }
                t = Some(v.parse::<i64>().map_err(|_| VerifyError::Malformed)?);
            }
            SCHEME => {
                let mut sig = [0u8; 32];
                // A v1 that is not 64 hex digits never matches; it is skipped like a scheme
                // this version does not know.
                if hex::decode_to_slice(v, &mut sig).is_ok() && sigs.len() < MAX_SIGNATURES {
                    sigs.push(sig);
                }
            }
            // Other schemes (a future v2) are ignored.
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if sigs.is_empty() {
        return Err(VerifyError::NoSignature);
    }
    Ok((t, sigs))
}

/// Checks a `Portcullis-Signature` header against the raw `body`: its timestamp within
/// `tolerance` of `now` (unix seconds) and one `v1` made with one of `secrets` (compared in
/// constant time).
pub fn verify(
    header: &str,
    secrets: &[&str],
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let (t, sigs) = parse(header)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.abs_diff(t) > tolerance.unsigned_abs() {
        return Err(VerifyError::OutsideTolerance);
    }
    let mut found = subtle::Choice::from(0);
    for s in secrets {
        let expected = mac(s, t, body);
        for sig in &sigs {
            found |= expected.ct_eq(sig);
        }
    }
    if bool::from(found) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "whsec_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";
    const S2: &str = "whsec_fedcba9876543210fedcba9876543210fedcba9876543210fedcba98765432";
    const T: i64 = 1_700_000_000;

    #[test]
    fn a_signed_body_verifies_and_anything_changed_does_not() {
        let body = br#"{"id":1,"type":"key.created"}"#;
        let h = sign(S1, T, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(verify(&h, &[S1], body, T, DEFAULT_TOLERANCE), Ok(()));
        assert_eq!(
            verify(&h, &[S2, S1], body, T + 300, DEFAULT_TOLERANCE),
            Ok(())
        );
        assert_eq!(
            verify(&h, &[S2], body, T, DEFAULT_TOLERANCE),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&h, &[S1], b"{\"id\":2}", T, DEFAULT_TOLERANCE),
            Err(VerifyError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = h.replacen("t=1700000000", "t=1700000001", 1);
        assert_eq!(
            verify(&moved, &[S1], body, T, DEFAULT_TOLERANCE),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&h, &[S1], body, T + 301, DEFAULT_TOLERANCE),
            Err(VerifyError::OutsideTolerance)
        );
        assert_eq!(
            verify(&h, &[S1], body, T - 301, DEFAULT_TOLERANCE),
            Err(VerifyError::OutsideTolerance)
        );
    }

    #[test]
    fn the_signed_payload_is_t_dot_body() {
        // A receiver written from the documentation alone computes the same value.
        let body = b"{}";
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(S1.as_bytes()).unwrap();
        m.update(b"1700000000.{}");
        let expected = hex::encode(m.finalize().into_bytes());
        assert_eq!(sign(S1, T, body), format!("t=1700000000,v1={expected}"));
    }

    #[test]
    fn during_a_roll_either_secret_verifies() {
        let body = b"{\"id\":7}";
        let h = sign_with(&[S2, S1], T, body);
        assert_eq!(h.matches(",v1=").count(), 2);
        assert_eq!(verify(&h, &[S1], body, T, DEFAULT_TOLERANCE), Ok(()));
        assert_eq!(verify(&h, &[S2], body, T, DEFAULT_TOLERANCE), Ok(()));
        assert_eq!(
            verify(&h, &["whsec_other"], body, T, DEFAULT_TOLERANCE),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let body = b"{}";
        let good = sign(S1, T, body);
        let sig = good.split_once(",v1=").unwrap().1;
        for (h, want) in [
            ("", VerifyError::Malformed),
            ("garbage", VerifyError::Malformed),
            (&format!("v1={sig}") as &str, VerifyError::Malformed),
            (&format!("t=,v1={sig}"), VerifyError::Malformed),
            (&format!("t=-5,v1={sig}"), VerifyError::Malformed),
            (&format!("t=1,t=2,v1={sig}"), VerifyError::Malformed),
            ("t=1700000000", VerifyError::NoSignature),
            ("t=1700000000,v1=zz", VerifyError::NoSignature),
            ("t=1700000000,v0=abc", VerifyError::NoSignature),
            (&"x".repeat(MAX_HEADER_LEN + 1), VerifyError::Malformed),
        ] {
            assert_eq!(
                verify(h, &[S1], body, T, DEFAULT_TOLERANCE),
                Err(want),
                "{h}"
            );
        }
        // Unknown schemes and spaces after commas are tolerated.
        let spaced = format!("t=1700000000, v0=abc, v1={sig}");
        assert_eq!(verify(&spaced, &[S1], body, T, DEFAULT_TOLERANCE), Ok(()));
    }
}
