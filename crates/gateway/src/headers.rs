//! Header handling of the proxy: the client's address, what is removed before forwarding
//! (hop-by-hop headers per RFC 9110 §7.6.1, credentials, spoofed identity headers, the headers of
//! [`super::rewrite`]) and what is added (identity, `X-Forwarded-For`, `Forwarded`,
//! `X-Forwarded-Proto`).
use std::{fmt, net::IpAddr};

use axum::http::{
    HeaderMap, HeaderName, HeaderValue,
    header::GetAll,
    header::{
        AUTHORIZATION, CONNECTION, FORWARDED, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
        TRANSFER_ENCODING, UPGRADE,
    },
};

use super::rewrite;
use portcullis_http::credential::{X_API_KEY, X_TENANT_ID};
use portcullis_http::header_value::written;

pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_PORTCULLIS_TENANT: HeaderName = HeaderName::from_static("x-portcullis-tenant");
pub static X_PORTCULLIS_KEY_ID: HeaderName = HeaderName::from_static("x-portcullis-key-id");
pub static X_PORTCULLIS_ENVIRONMENT: HeaderName =
    HeaderName::from_static("x-portcullis-environment");
pub static X_PORTCULLIS_SCOPES: HeaderName = HeaderName::from_static("x-portcullis-scopes");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

pub use portcullis_core::ip::parse_trusted_proxies;
pub use portcullis_http::client::{Scheme, X_FORWARDED_FOR, client_ip, is_trusted};

/// Names a `Connection` header lists: they are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Headers a proxy never passes on (RFC 9110 §7.6.1), and `TE` (its `trailers` is put back).
static HOP_BY_HOP: [&HeaderName; 9] = [
    &CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &PROXY_AUTHENTICATE,
    &PROXY_AUTHORIZATION,
    &TRAILER,
    &TRANSFER_ENCODING,
    &UPGRADE,
    &TE,
];

/// Whether a request header `name` stays at the gateway (see [`to_upstream`]).
fn never_forwarded(name: &HeaderName, peer_trusted: bool) -> bool {
    HOP_BY_HOP.contains(&name)
        || *name == AUTHORIZATION
        || *name == X_API_KEY
        || *name == X_TENANT_ID
        || name.as_str().starts_with("x-portcullis-")
        || rewrite::gateway_owned_alias(name.as_str())
        || !rewrite::allowed(name.as_str(), peer_trusted)
}

/// Removes hop-by-hop headers (and those `Connection` lists) of an upstream response: looked
/// up only when the response has any (one pass over its names).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|n| HOP_BY_HOP.contains(&n)) {
        return;
    }
    for name in connection_listed(headers) {
        headers.remove(&name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

pub use portcullis_service::cache::IdentityHeaders as Identity;

/// The hop a request came in on: the socket peer, whether it is a trusted proxy, the `Host` the
/// client asked for and the listener's scheme.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    pub peer: IpAddr,
    pub peer_trusted: bool,
    pub host: Option<&'a str>,
    pub scheme: Scheme,
}

/// Rewrites a client request's headers for the upstream, in place.
pub fn to_upstream(headers: &mut HeaderMap, hop: &Hop<'_>, identity: Option<&Identity>) {
    // Room for what is added (identity and forwarding headers) in one growth, not several.
    headers.reserve(8);
    // `TE: trailers` is the one TE value a proxy passes on.
    let te_trailers = headers
        .get(TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    // Hop-by-hop headers (and those `Connection` lists), credentials (they stay at the gate),
    // identity headers (they come from the gate only), and the method overrides, URL rewrites
    // and forwarding headers the peer may not send: found in one pass over the names, each
    // removed once.
    if headers.contains_key(CONNECTION) {
        for name in connection_listed(headers) {
            headers.remove(&name);
        }
    }
    let peer_trusted = hop.peer_trusted;
    let mut gone: [Option<HeaderName>; 8] = Default::default();
    let mut more = Vec::new();
    let names = headers.keys().filter(|n| never_forwarded(n, peer_trusted));
    for (found, name) in names.enumerate() {
        match gone.get_mut(found) {
            Some(slot) => *slot = Some(name.clone()),
            None => more.push(name.clone()),
        }
    }
    for name in gone.iter().flatten().chain(&more) {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if let Some(id) = identity {
        for (name, value) in [
            (&X_PORTCULLIS_TENANT, &id.tenant),
            (&X_PORTCULLIS_KEY_ID, &id.key_id),
            (&X_PORTCULLIS_ENVIRONMENT, &id.environment),
            (&X_PORTCULLIS_SCOPES, &id.scopes),
        ] {
            if let Some(v) = value {
                headers.insert(name.clone(), v.clone());
            }
        }
    }
    append_forwarded(headers, hop);
}

/// Appends the peer to `X-Forwarded-For` and `Forwarded`, and sets `X-Forwarded-Proto` to the
/// listener's scheme unless a trusted proxy sent one. What an untrusted peer sent in them is
/// dropped first, so the upstream never sees a forged chain.
fn append_forwarded(headers: &mut HeaderMap, hop: &Hop<'_>) {
    let Hop {
        peer,
        peer_trusted,
        host,
        scheme,
    } = *hop;
    let peer = portcullis_core::ip::canonical(peer);
    // Each value is formatted on the stack and copied once into its header value.
    let xff = written(|w| {
        if peer_trusted {
            joined(w, headers.get_all(&X_FORWARDED_FOR))?;
        }
        write!(w, "{peer}")
    });
    let fwd = written(|w| {
        if peer_trusted {
            joined(w, headers.get_all(FORWARDED))?;
        }
        match peer {
            IpAddr::V4(v4) => write!(w, "for={v4}")?,
            IpAddr::V6(v6) => write!(w, "for=\"[{v6}]\"")?,
        }
        write!(w, ";proto={}", scheme.as_str())?;
        match host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"')) {
            Some(h) => write!(w, ";host=\"{h}\""),
            None => Ok(()),
        }
    });
    // Inserting replaces every value the client sent.
    match xff {
        Some(v) => headers.insert(X_FORWARDED_FOR.clone(), v),
        None => headers.remove(&X_FORWARDED_FOR),
    };
    match fwd {
        Some(v) => headers.insert(FORWARDED, v),
        None => headers.remove(FORWARDED),
    };
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(scheme.as_str()),
        );
    }
}

/// Writes the text values of `values` into `out`, each followed by `, `.
fn joined(out: &mut dyn fmt::Write, values: GetAll<'_, HeaderValue>) -> fmt::Result {
    for v in values.iter().filter_map(|v| v.to_str().ok()) {
        out.write_str(v)?;
        out.write_str(", ")?;
    }
    Ok(())
}

/// Removes hop-by-hop headers of an upstream response.
pub fn from_upstream(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    #[test]
    fn client_ip_trusts_only_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let spoof = h(&[("x-forwarded-for", "1.1.1.1")]);
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(client_ip(peer, &spoof, &trusted), peer, "untrusted peer");
        let lb: IpAddr = "10.0.0.2".parse().expect("ip");
        let chain = h(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.3")]);
        assert_eq!(
            client_ip(lb, &chain, &trusted),
            "198.51.100.7".parse::<IpAddr>().expect("ip"),
            "right-most untrusted entry"
        );
        let split = h(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "[2001:db8::1]:443"),
        ]);
        assert_eq!(
            client_ip(lb, &split, &trusted),
            "2001:db8::1".parse::<IpAddr>().expect("ip")
        );
        let garbage = h(&[("x-forwarded-for", "6.6.6.6, nonsense")]);
        assert_eq!(
            client_ip(lb, &garbage, &trusted),
            lb,
            "garbage stops the walk"
        );
        assert_eq!(client_ip(lb, &HeaderMap::new(), &trusted), lb);
    }

    #[test]
    fn credentials_hop_by_hop_and_spoofed_identity_removed() {
        let mut m = h(&[
            ("authorization", "Bearer sk_live_x"),
            ("x-api-key", "sk_live_x"),
            ("x-tenant-id", "acme"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip, trailers"),
            ("upgrade", "websocket"),
            ("x-portcullis-tenant", "evil"),
            ("X-Portcullis-Admin", "1"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("accept", "application/json"),
        ]);
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        let id = Identity {
            tenant: v("acme"),
            key_id: v("key_1"),
            environment: v("live"),
            scopes: v("a:b c:d"),
        };
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        let hop = Hop {
            peer,
            peer_trusted: false,
            host: Some("api.example.com"),
            scheme: Scheme::Http,
        };
        to_upstream(&mut m, &hop, Some(&id));
        for gone in [
            "authorization",
            "x-api-key",
            "x-tenant-id",
            "connection",
            "x-secret-hop",
            "keep-alive",
            "upgrade",
            "x-portcullis-admin",
        ] {
            assert!(m.get(gone).is_none(), "{gone} must be removed");
        }
        assert_eq!(m["te"], "trailers");
        assert_eq!(m["x-portcullis-tenant"], "acme");
        assert_eq!(m.get_all("x-portcullis-tenant").iter().count(), 1);
        assert_eq!(m["x-portcullis-scopes"], "a:b c:d");
        assert_eq!(
            m["x-forwarded-for"], "203.0.113.9",
            "untrusted chain dropped"
        );
        assert_eq!(
            m["forwarded"],
            "for=203.0.113.9;proto=http;host=\"api.example.com\""
        );
        assert_eq!(m["accept"], "application/json");
    }

    #[test]
    fn trusted_peer_chain_is_appended() {
        let mut m = h(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.7"),
        ]);
        let peer: IpAddr = "::1".parse().expect("ip");
        let hop = Hop {
            peer,
            peer_trusted: true,
            host: None,
            scheme: Scheme::Http,
        };
        to_upstream(&mut m, &hop, None);
        assert_eq!(m["x-forwarded-for"], "198.51.100.7, ::1");
        assert_eq!(m["forwarded"], "for=198.51.100.7, for=\"[::1]\";proto=http");
    }

    #[test]
    fn forwarded_proto_is_the_listener_scheme_unless_a_trusted_proxy_says() {
        let peer: IpAddr = "192.0.2.1".parse().expect("ip");
        for (trusted, scheme, sent, want) in [
            (false, Scheme::Http, Some("https"), "http"),
            (false, Scheme::Https, Some("http"), "https"),
            (false, Scheme::Https, None, "https"),
            (true, Scheme::Http, Some("https"), "https"),
            (true, Scheme::Https, None, "https"),
            (true, Scheme::Http, None, "http"),
        ] {
            let mut m = sent.map_or_else(HeaderMap::new, |p| h(&[("x-forwarded-proto", p)]));
            let hop = Hop {
                peer,
                peer_trusted: trusted,
                host: None,
                scheme,
            };
            to_upstream(&mut m, &hop, None);
            let got: Vec<_> = m.get_all("x-forwarded-proto").iter().collect();
            assert_eq!(got, [want], "{trusted} {scheme:?} {sent:?}");
            let fwd = m["forwarded"].to_str().expect("ascii");
            assert!(
                fwd.ends_with(&format!("proto={}", scheme.as_str())),
                "our own hop's element names our scheme: {fwd}"
            );
        }
    }

    #[test]
    fn underscore_aliases_of_gateway_headers_are_removed() {
        let mut m = h(&[
            ("x_portcullis_tenant", "evil"),
            ("X_Portcullis-Scopes", "admin:*"),
            ("x_forwarded_for", "198.51.100.7"),
            ("x_http_method_override", "DELETE"),
            ("x_keep_me", "1"),
        ]);
        let hop = Hop {
            peer: "10.0.0.1".parse().expect("ip"),
            peer_trusted: true,
            host: None,
            scheme: Scheme::Http,
        };
        to_upstream(&mut m, &hop, None);
        let mut names: Vec<&str> = m.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x_keep_me"
            ]
        );
    }

    #[test]
    fn trusted_proxies_parse() {
        let nets = parse_trusted_proxies(&["10.1.2.3/8".into(), " ::1 ".into()]).expect("valid");
        assert_eq!(nets[0].to_string(), "10.0.0.0/8");
        assert!(is_trusted("::ffff:10.9.9.9".parse().expect("ip"), &nets));
        assert!(is_trusted("::1".parse().expect("ip"), &nets));
        assert!(!is_trusted("11.0.0.1".parse().expect("ip"), &nets));
        let err = parse_trusted_proxies(&["10.0.0.0/33".into()]).expect_err("invalid");
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
