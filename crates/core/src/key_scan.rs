//! Finding keys inside text that should never hold one: URLs (paths, query strings) in any
//! encoding. A key is found wherever it sits — a whole path segment, inside one
//! (`/files/report-sk_live_….pdf`), a query value — and however it is percent-encoded
//! (`sk%5Flive_…`, `%5f` or `%5F`, every character encoded, encoded twice).
//!
//! The checksum in every key ([`crate::key`]) makes this exact without a database: a substring
//! is reported only when it is a well-formed key with a valid CRC32, so ordinary text is not
//! refused.
use crate::key::{self, BODY_LEN, MAX_PREFIX_LEN};

/// How many rounds of percent-decoding are undone (an upstream or a framework may decode more
/// than once; each round only shortens the text).
pub const DECODE_ROUNDS: usize = 4;

/// Does `text` contain a well-formed key anywhere, as written (no decoding)?
pub fn contains_key(text: &[u8]) -> bool {
    // A key is `{prefix}_{38 base62}`: find each `_` followed by a body, then try every prefix
    // that ends there (the text before may run into the prefix: `xsk_live_…`, `a_sk_live_…`).
    for (i, _) in text.iter().enumerate().filter(|(_, b)| **b == b'_') {
        let Some(body) = text.get(i + 1..i + 1 + BODY_LEN) else {
            break;
        };
        if !body.iter().all(u8::is_ascii_alphanumeric) {
            continue;
        }
        let end = i + 1 + BODY_LEN;
        let lowest = i.saturating_sub(MAX_PREFIX_LEN);
        let mut start = i;
        while start > lowest {
            let c = text[start - 1];
            if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
                break;
            }
            start -= 1;
            // ASCII by construction: the prefix and body bytes were checked above.
            if let Ok(candidate) = std::str::from_utf8(&text[start..end])
                && key::parse(candidate).is_ok()
            {
                return true;
            }
        }
    }
    false
}

/// Decodes `%XX` (either case of hex digit); anything else, including a `%` not followed by two
/// hex digits, is kept as it is. Returns `None` when there was nothing to decode.
fn percent_decode(text: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%'
            && let (Some(h), Some(l)) = (
                text.get(i + 1).copied().and_then(hex),
                text.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            changed = true;
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    changed.then_some(out)
}

/// Does `text` (a URL's path or query, as received) hold a key, as written or after undoing up
/// to [`DECODE_ROUNDS`] rounds of percent-encoding?
pub fn url_contains_key(text: &str) -> bool {
    // Shorter than the shortest key: nothing to find, whatever the encoding.
    if text.len() < BODY_LEN + 3 {
        return false;
    }
    let mut current = std::borrow::Cow::Borrowed(text.as_bytes());
    for _ in 0..=DECODE_ROUNDS {
        if contains_key(&current) {
            return true;
        }
        match percent_decode(&current) {
            Some(decoded) => current = std::borrow::Cow::Owned(decoded),
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    /// How one character of a key is written in a URL.
    #[derive(Debug, Clone, Copy)]
    enum Enc {
        Plain,
        Upper,
        Lower,
        Twice,
    }

    fn encode(key: &str, encs: &[Enc]) -> String {
        key.bytes()
            .zip(encs.iter().cycle())
            .map(|(b, e)| match e {
                Enc::Plain => (b as char).to_string(),
                Enc::Upper => format!("%{b:02X}"),
                Enc::Lower => format!("%{b:02x}"),
                Enc::Twice => format!("%25{b:02X}"),
            })
            .collect()
    }

    fn enc() -> impl Strategy<Value = Enc> {
        prop_oneof![
            4 => Just(Enc::Plain),
            1 => Just(Enc::Upper),
            1 => Just(Enc::Lower),
            1 => Just(Enc::Twice),
        ]
    }

    fn prefix() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("sk_live".to_owned()),
            Just("sk_test".to_owned()),
            Just(key::ADMIN_PREFIX.to_owned()),
            "[a-z][a-z0-9]{1,10}_(live|test)",
        ]
    }

    #[test]
    fn the_forms_seen_in_the_wild() {
        let k = key::generate("sk_live");
        let k = k.expose_secret();
        let escaped = k.replacen('_', "%5F", 1);
        for url in [
            format!("/v1/{k}"),
            format!("/v1/{escaped}"),
            format!("/v1/{}", k.replacen('_', "%5f", 2)),
            format!("/files/report-{k}.pdf"),
            format!("/x;token={k}"),
            format!("a=1&b=pre{k}post"),
            format!("q=%2525{}", escaped.replace('%', "%25")),
        ] {
            assert!(url_contains_key(&url), "{url}");
        }
        // A key with one character changed, and ordinary URLs, are not keys.
        let broken = format!("{}x", &k[..k.len() - 1]);
        let broken = if broken == *k {
            format!("{}y", &k[..k.len() - 1])
        } else {
            broken
        };
        for url in [
            format!("/v1/{broken}"),
            "/v1/invoices/inv_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ".to_owned(),
            "/%".to_owned(),
            "/%zz%5".to_owned(),
            String::new(),
        ] {
            assert!(!url_contains_key(&url), "{url}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A real generated key, each character written plainly or percent-encoded (upper or
        /// lower case hex, or encoded twice), anywhere in a path or query, is found.
        #[test]
        fn generated_keys_are_found_however_encoded(
            prefix in prefix(),
            encs in proptest::collection::vec(enc(), 1..8),
            before in "[a-zA-Z0-9/._~;=&-]{0,20}",
            after in "[a-zA-Z0-9/._~;=&-]{0,20}",
            query in any::<bool>(),
        ) {
            let k = key::generate(&prefix);
            let written = encode(k.expose_secret(), &encs);
            let url = if query {
                format!("/v1/x?{before}{written}{after}")
            } else {
                format!("/v1/{before}{written}{after}")
            };
            prop_assert!(url_contains_key(&url), "{}", url);
        }

        /// Text without a key is not mistaken for one (the checksum decides), and never panics.
        #[test]
        fn random_urls_are_not_keys(s in "[a-z0-9_%/A-F]{0,200}") {
            prop_assert!(!url_contains_key(&s));
        }
    }
}
