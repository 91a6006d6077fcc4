//! The key format: `{prefix}_{body}`, body = 32 base62 characters from the OS CSPRNG followed by the
//! 6-character base62 encoding of the CRC32 of `{prefix}_{random}` (the GitHub token scheme).
//!
//! The checksum lets a scanner tell a real key from noise without a database, and lets the server
//! reject garbage before any cache or store lookup. It is not a security property: the 32 random
//! characters (about 190 bits) are.
use secrecy::SecretString;

use crate::tenant::Environment;

/// Random characters in a key body.
pub const RANDOM_LEN: usize = 32;
/// Checksum characters at the end of a key body.
pub const CHECKSUM_LEN: usize = 6;
/// Characters after the last `_`.
pub const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// Longest prefix (`{tenant prefix}_{environment}` or `pc_admin`).
pub const MAX_PREFIX_LEN: usize = 24;
/// Longest string that can be a key; anything longer is rejected unread.
pub const MAX_KEY_LEN: usize = MAX_PREFIX_LEN + 1 + BODY_LEN;
/// Prefix of admin keys.
pub const ADMIN_PREFIX: &str = "pc_admin";
/// Tenant key prefix used when a tenant sets none: keys look like `sk_live_…` / `sk_test_…`.
pub const DEFAULT_TENANT_PREFIX: &str = "sk";

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a key. Callers map every variant to the same outward answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFormatError {
    #[error("not a key: wrong length")]
    Length,
    #[error("not a key: bad prefix")]
    Prefix,
    #[error("not a key: bad characters")]
    Charset,
    #[error("not a key: checksum mismatch")]
    Checksum,
}

/// What kind of credential a well-formed key is, read from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `pc_admin_…`
    Admin,
    /// `{tenant prefix}_{live|test}_…`
    Tenant(Environment),
}

/// A well-formed key (syntax and checksum verified; nothing about whether it exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub prefix: &'a str,
    pub kind: KeyKind,
}

/// The prefix of a tenant key: `{tenant_prefix}_{environment}`.
pub fn tenant_key_prefix(tenant_prefix: &str, env: Environment) -> String {
    format!("{tenant_prefix}_{}", env.as_str())
}

/// Generates a new key under `prefix` (which must be a valid prefix).
///
/// # Panics
/// If the operating system's random source fails, which leaves no safe way to continue.
pub fn generate(prefix: &str) -> SecretString {
    debug_assert!(valid_prefix(prefix), "invalid prefix");
    let mut out = String::with_capacity(prefix.len() + 1 + BODY_LEN);
    out.push_str(prefix);
    out.push('_');
    let mut buf = [0u8; 64];
    let mut produced = 0;
    while produced < RANDOM_LEN {
        getrandom::fill(&mut buf).expect("operating system random source failed");
        for b in buf {
            // 248 = 4 * 62: rejection sampling keeps every character equally likely.
            if b < 248 && produced < RANDOM_LEN {
                out.push(ALPHABET[usize::from(b % 62)] as char);
                produced += 1;
            }
        }
    }
    buf.fill(0);
    let crc = crc32fast::hash(out.as_bytes());
    out.extend(encode_checksum(crc).map(char::from));
    SecretString::from(out)
}

/// Parses and checks a candidate key. Does no allocation and reads at most [`MAX_KEY_LEN`] bytes.
pub fn parse(candidate: &str) -> Result<ParsedKey<'_>, KeyFormatError> {
    if candidate.len() > MAX_KEY_LEN || candidate.len() < BODY_LEN + 3 {
        return Err(KeyFormatError::Length);
    }
    let (prefix, body) = candidate.rsplit_once('_').ok_or(KeyFormatError::Prefix)?;
    if body.len() != BODY_LEN {
        return Err(KeyFormatError::Length);
    }
    if !valid_prefix(prefix) {
        return Err(KeyFormatError::Prefix);
    }
    if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyFormatError::Charset);
    }
    let signed = &candidate[..candidate.len() - CHECKSUM_LEN];
    let expected = encode_checksum(crc32fast::hash(signed.as_bytes()));
    if expected[..] != body.as_bytes()[RANDOM_LEN..] {
        return Err(KeyFormatError::Checksum);
    }
    let kind = if prefix == ADMIN_PREFIX {
        KeyKind::Admin
    } else if let Some(env) = prefix
        .rsplit_once('_')
        .and_then(|(_, env)| Environment::parse(env))
    {
        KeyKind::Tenant(env)
    } else {
        return Err(KeyFormatError::Prefix);
    };
    Ok(ParsedKey { prefix, kind })
}

/// The non-secret hint shown in lists: the prefix and the last four characters.
/// Returns `None` for strings that are not well-formed keys.
pub fn hint(candidate: &str) -> Option<String> {
    let parsed = parse(candidate).ok()?;
    Some(format!(
        "{}_…{}",
        parsed.prefix,
        &candidate[candidate.len() - 4..]
    ))
}

/// `true` if `prefix` is 2..=24 characters of `[a-z0-9_]`, starts with a letter, does not end
/// with `_` and has no `__`.
pub fn valid_prefix(prefix: &str) -> bool {
    let b = prefix.as_bytes();
    (2..=MAX_PREFIX_LEN).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'_'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !prefix.contains("__")
}

/// The checksum's 6 base62 characters (ASCII), without allocating: it runs on every request.
fn encode_checksum(mut crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_keys_parse() {
        let k = generate("sk_live");
        let s = k.expose_secret();
        assert!(s.starts_with("sk_live_"));
        assert_eq!(s.len(), "sk_live_".len() + BODY_LEN);
        let p = parse(s).expect("parses");
        assert_eq!(p.prefix, "sk_live");
        assert_eq!(p.kind, KeyKind::Tenant(Environment::Live));
        let a = generate(ADMIN_PREFIX);
        assert_eq!(parse(a.expose_secret()).map(|p| p.kind), Ok(KeyKind::Admin));
        let t = generate("acme_test");
        assert_eq!(
            parse(t.expose_secret()).map(|p| p.kind),
            Ok(KeyKind::Tenant(Environment::Test))
        );
    }

    #[test]
    fn keys_are_distinct_and_secret_is_redacted() {
        let a = generate("sk_test");
        let b = generate("sk_test");
        assert_ne!(a.expose_secret(), b.expose_secret());
        let dbg = format!("{a:?}");
        assert!(!dbg.contains(a.expose_secret()));
    }

    #[test]
    fn hint_shows_prefix_and_last_four() {
        let k = generate("sk_live");
        let s = k.expose_secret();
        let h = hint(s).expect("hint");
        assert_eq!(h, format!("sk_live_…{}", &s[s.len() - 4..]));
        assert_eq!(hint("nonsense"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(""), Err(KeyFormatError::Length));
        assert_eq!(parse(&"a".repeat(500)), Err(KeyFormatError::Length));
        let k = generate("sk_live");
        let s = k.expose_secret();
        assert_eq!(parse(&s.replace('_', "-")), Err(KeyFormatError::Prefix));
        assert_eq!(
            parse(&s.replace("sk_live", "SK_live")),
            Err(KeyFormatError::Prefix)
        );
        assert_eq!(
            parse(&s.replace("sk_live", "sk_prod")),
            Err(KeyFormatError::Checksum)
        );
        // A valid checksum over a prefix that names no environment is still not a key.
        let odd = generate("sk_prod");
        assert_eq!(parse(odd.expose_secret()), Err(KeyFormatError::Prefix));
    }

    fn flip(s: &str, i: usize, c: char) -> String {
        s.char_indices()
            .map(|(j, x)| if j == i { c } else { x })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_valid_prefix_roundtrips(t in "[a-z][a-z0-9]{1,15}", live in any::<bool>()) {
            let env = if live { Environment::Live } else { Environment::Test };
            let prefix = tenant_key_prefix(&t, env);
            let k = generate(&prefix);
            let p = parse(k.expose_secret()).expect("parses");
            prop_assert_eq!(p.prefix, prefix.as_str());
            prop_assert_eq!(p.kind, KeyKind::Tenant(env));
        }

        #[test]
        fn single_character_changes_in_the_body_are_detected(pos in 0usize..BODY_LEN, c in "[0-9A-Za-z]") {
            let k = generate("sk_live");
            let s = k.expose_secret();
            let i = "sk_live_".len() + pos;
            let c = c.chars().next().expect("one char");
            prop_assume!(s.as_bytes()[i] as char != c);
            let changed = flip(s, i, c);
            prop_assert!(parse(&changed).is_err());
        }

        #[test]
        fn random_strings_never_panic(s in "\\PC{0,120}") {
            let _ = parse(&s);
            let _ = hint(&s);
        }

        #[test]
        fn random_bodies_almost_never_pass(body in "[0-9A-Za-z]{38}") {
            // A random body passes the CRC32 check with probability 2^-32.
            let candidate = format!("sk_live_{body}");
            prop_assert!(parse(&candidate).is_err());
        }
    }
}
