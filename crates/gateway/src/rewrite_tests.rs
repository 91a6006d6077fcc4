//! Tests of the rewrite-header policy: the list, the rules per peer, and a property test of what
//! reaches the upstream through `headers::to_upstream` for generated header maps.
use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;
use crate::headers::{Hop, Scheme, to_upstream};

/// The specification, written out apart from [`REWRITE_HEADERS`]: never forwarded at all.
const SPEC_OVERRIDE: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Forwarded only from a trusted proxy.
const SPEC_FORWARDING: &[&str] = &[
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
];

/// Lowercase, `_` as `-`: how a CGI-style upstream sees a name.
fn as_upstream_reads(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

#[test]
fn the_list_is_the_specification() {
    let mut listed: Vec<String> = REWRITE_HEADERS
        .iter()
        .map(|h| h.name.to_ascii_lowercase())
        .collect();
    let mut spec: Vec<String> = SPEC_OVERRIDE
        .iter()
        .chain(SPEC_FORWARDING)
        .map(|s| (*s).to_owned())
        .collect();
    listed.sort();
    spec.sort();
    assert_eq!(listed, spec);
    for h in REWRITE_HEADERS {
        let lower = h.name.to_ascii_lowercase();
        assert_eq!(
            h.class == Class::Override,
            SPEC_OVERRIDE.contains(&lower.as_str()),
            "{}",
            h.name
        );
    }
}

#[test]
fn docs_mirror_the_list() {
    let docs = include_str!("../../../docs/gateway.md");
    for h in REWRITE_HEADERS {
        let class = match h.class {
            Class::Override => "never",
            Class::Forwarding => "from a trusted proxy",
        };
        let row = format!("| `{}` | {class} |", h.name);
        assert!(docs.contains(&row), "docs/gateway.md lacks the row {row}");
    }
}

#[test]
fn rules_per_peer() {
    for (name, untrusted, trusted) in [
        ("x-http-method-override", false, false),
        ("x_http_method_override", false, false),
        ("x-original-url", false, false),
        ("x-forwarded-host", false, true),
        ("x_forwarded_host", false, false),
        ("x-forwarded_proto", false, false),
        ("forwarded", false, true),
        ("x-real-ip", false, true),
        ("x-forwarded-hosts", true, true),
        ("x-forwarded-for", true, true),
        ("accept", true, true),
    ] {
        assert_eq!(allowed(name, false), untrusted, "{name} from a client");
        assert_eq!(allowed(name, true), trusted, "{name} from a trusted proxy");
    }
    let mut m = HeaderMap::new();
    m.insert("accept", HeaderValue::from_static("*/*"));
    m.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
    assert_eq!(first_forbidden(&m, false), Some("X-Forwarded-Host"));
    assert_eq!(first_forbidden(&m, true), None);
    m.insert("x_http_method", HeaderValue::from_static("DELETE"));
    assert_eq!(first_forbidden(&m, true), Some("X-HTTP-Method"));
    strip(&mut m, true);
    assert_eq!(
        m.len(),
        2,
        "the trusted proxy's X-Forwarded-Host stays: {m:?}"
    );
    strip(&mut m, false);
    assert_eq!(m.len(), 1, "{m:?}");
}

/// A listed name in random case, with some `-` spelt `_`.
fn listed_name() -> impl Strategy<Value = String> {
    (
        0..REWRITE_HEADERS.len(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(i, upper, under, dashes_only)| {
            REWRITE_HEADERS[i]
                .name
                .chars()
                .enumerate()
                .map(|(n, c)| {
                    if c == '-' && !dashes_only && under >> (n % 64) & 1 == 1 {
                        '_'
                    } else if upper >> (n % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect()
        })
}

/// Names that are not listed, some close to listed ones, in random case.
fn benign_name() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "accept",
        "content-type",
        "user-agent",
        "x-request-id",
        "if-none-match",
        "x-forwarded-hosts",
        "x-http-methods",
        "xforwarded-host",
        "forwarded-by",
        "x-original-urls",
    ]);
    prop_oneof![fixed.prop_map(str::to_owned), "x-app-[a-z0-9_-]{1,12}"]
        .prop_flat_map(|n| {
            let len = n.len();
            (Just(n), prop::collection::vec(any::<bool>(), len))
        })
        .prop_map(|(n, up)| {
            n.chars()
                .zip(up)
                .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
                .collect()
        })
}

fn value() -> impl Strategy<Value = String> {
    "[!-~][ -~]{0,30}[!-~]|[!-~]"
}

#[derive(Debug, Clone)]
struct Case {
    listed: Vec<(String, String)>,
    benign: Vec<(String, String)>,
    trusted: bool,
    https: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((listed_name(), value()), 0..12),
        prop::collection::vec((benign_name(), value()), 0..8),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(listed, benign, trusted, https)| Case {
            listed,
            benign,
            trusted,
            https,
        })
}

fn header_map(pairs: impl IntoIterator<Item = (String, String)>) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(&v).expect("value"),
        );
    }
    m
}

/// The values of `name` in `m`, in order.
fn values(m: &HeaderMap, name: &str) -> Vec<String> {
    m.get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What was authorised is what the upstream sees: no method override or URL rewrite ever
    /// reaches it, no forwarding header of an untrusted peer does (only the gateway's own
    /// `Forwarded` and `X-Forwarded-Proto`), a trusted proxy's canonical forwarding headers do,
    /// and every other header passes unchanged.
    #[test]
    fn no_rewrite_header_reaches_the_upstream(c in case()) {
        let input = header_map(c.listed.iter().chain(&c.benign).cloned());
        let mut out = input.clone();
        let peer: IpAddr = "192.0.2.10".parse().expect("ip");
        let scheme = if c.https { Scheme::Https } else { Scheme::Http };
        let hop = Hop { peer, peer_trusted: c.trusted, host: None, scheme };
        to_upstream(&mut out, &hop, None);
        for name in out.keys() {
            let read = as_upstream_reads(name.as_str());
            prop_assert!(!SPEC_OVERRIDE.contains(&read.as_str()), "{name} reached the upstream");
            if SPEC_FORWARDING.contains(&read.as_str()) {
                prop_assert_eq!(name.as_str(), read.as_str(), "only canonical spellings");
            }
        }
        let fwd = values(&out, "forwarded");
        let own = format!("for=192.0.2.10;proto={}", scheme.as_str());
        prop_assert_eq!(fwd.len(), 1);
        prop_assert!(fwd[0].ends_with(&own), "{:?}", fwd);
        let proto = values(&out, "x-forwarded-proto");
        for spec in SPEC_FORWARDING {
            let sent = values(&input, spec);
            let got = values(&out, spec);
            match (*spec, c.trusted) {
                ("forwarded", false) => prop_assert_eq!(&fwd[0], &own),
                ("forwarded", true) if !sent.is_empty() => {
                    prop_assert_eq!(&fwd[0], &format!("{}, {own}", sent.join(", ")));
                }
                ("x-forwarded-proto", _) if !c.trusted || sent.is_empty() => {
                    prop_assert_eq!(&proto, &vec![scheme.as_str().to_owned()]);
                }
                (_, false) if *spec != "forwarded" => prop_assert!(got.is_empty(), "{spec}: {got:?}"),
                (_, true) if *spec != "forwarded" => prop_assert_eq!(got, sent, "{}", spec),
                _ => {}
            }
        }
        for (name, _) in &c.benign {
            let name = name.to_ascii_lowercase();
            prop_assert_eq!(values(&out, &name), values(&input, &name), "{}", name);
        }
    }

    /// Refuse mode refuses exactly the requests strip mode would change.
    #[test]
    fn refuse_finds_what_strip_removes(c in case()) {
        let input = header_map(c.listed.iter().chain(&c.benign).cloned());
        let mut stripped = input.clone();
        strip(&mut stripped, c.trusted);
        prop_assert_eq!(first_forbidden(&input, c.trusted).is_some(), stripped.len() != input.len());
        prop_assert_eq!(first_forbidden(&stripped, c.trusted), None);
    }
}
