//! Headers that would let a client rewrite an authorised request at the upstream: method
//! overrides, URL rewrites, and the forwarding headers frameworks build the request's scheme,
//! host, port, prefix and client address from. The gateway checks the method, path and client it
//! sees; any of these headers would make the upstream act on others.
//!
//! - **Method override and URL rewrite** headers are never forwarded, whoever sends them (a
//!   trusted proxy passes its client's headers on unchanged, and the gateway authorised the method
//!   and path of the request line, not the ones these name).
//! - **Forwarding** headers are forwarded only from a peer in `trusted_proxies`, and only in their
//!   canonical spelling.
//!
//! Names are compared case-insensitively and with `_` equal to `-`: CGI, WSGI and PHP map both to
//! the same variable (`HTTP_X_FORWARDED_HOST`). [`REWRITE_HEADERS`] is the one list; the table in
//! `docs/gateway.md` mirrors it (a test checks that it does).
use axum::http::{HeaderMap, HeaderName};

/// What a listed header does to the upstream's view of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Changes the method or the path the upstream acts on: never forwarded.
    Override,
    /// Describes the client's hop (scheme, host, port, prefix, address): forwarded only from a
    /// trusted proxy.
    Forwarding,
}

/// One listed header: its canonical spelling and its class.
#[derive(Debug, Clone, Copy)]
pub struct RewriteHeader {
    pub name: &'static str,
    pub class: Class,
}

const fn entry(name: &'static str, class: Class) -> RewriteHeader {
    RewriteHeader { name, class }
}

/// Every header the gateway strips (or refuses) unless the rule of its class allows it.
/// `X-Forwarded-For` is not here: the gateway always rebuilds it (see `headers::to_upstream`).
pub const REWRITE_HEADERS: &[RewriteHeader] = &[
    entry("X-HTTP-Method-Override", Class::Override),
    entry("X-HTTP-Method", Class::Override),
    entry("X-Method-Override", Class::Override),
    entry("X-Original-URL", Class::Override),
    entry("X-Rewrite-URL", Class::Override),
    entry("Forwarded", Class::Forwarding),
    entry("X-Forwarded-Host", Class::Forwarding),
    entry("X-Forwarded-Port", Class::Forwarding),
    entry("X-Forwarded-Prefix", Class::Forwarding),
    entry("X-Forwarded-Proto", Class::Forwarding),
    entry("X-Forwarded-Scheme", Class::Forwarding),
    entry("X-Forwarded-Ssl", Class::Forwarding),
    entry("Front-End-Https", Class::Forwarding),
    entry("X-Url-Scheme", Class::Forwarding),
    entry("X-Real-IP", Class::Forwarding),
    entry("X-Client-IP", Class::Forwarding),
    entry("Client-IP", Class::Forwarding),
    entry("True-Client-IP", Class::Forwarding),
    entry("X-Cluster-Client-IP", Class::Forwarding),
];

pub use portcullis_service::config::gateway::RewriteMode;

/// `a` equals `b` ignoring ASCII case, with `_` in `a` standing for `-`. `exact` tells whether `a`
/// is spelt with `-` where `b` has one.
fn same_name(a: &[u8], b: &[u8]) -> Option<bool> {
    if a.len() != b.len() {
        return None;
    }
    let mut exact = true;
    for (&x, &y) in a.iter().zip(b) {
        if x == b'_' && y == b'-' {
            exact = false;
        } else if !x.eq_ignore_ascii_case(&y) {
            return None;
        }
    }
    Some(exact)
}

/// The listed header `name` spells, and whether it spells it canonically (`-`, not `_`).
pub fn lookup(name: &str) -> Option<(&'static RewriteHeader, bool)> {
    REWRITE_HEADERS
        .iter()
        .find_map(|h| same_name(name.as_bytes(), h.name.as_bytes()).map(|exact| (h, exact)))
}

/// The listed header `name` spells, if the peer may not send it on: everything listed, except,
/// from a trusted proxy, a forwarding header in its canonical spelling.
fn forbidden(name: &str, peer_trusted: bool) -> Option<&'static RewriteHeader> {
    lookup(name)
        .filter(|&(h, exact)| !(peer_trusted && exact && h.class == Class::Forwarding))
        .map(|(h, _)| h)
}

/// Whether a peer may send the header `name` on to the upstream.
pub fn allowed(name: &str, peer_trusted: bool) -> bool {
    forbidden(name, peer_trusted).is_none()
}

/// The canonical name of the first listed header of `headers` the peer may not send.
pub fn first_forbidden(headers: &HeaderMap, peer_trusted: bool) -> Option<&'static str> {
    headers
        .keys()
        .find_map(|n| forbidden(n.as_str(), peer_trusted))
        .map(|h| h.name)
}

/// Removes every listed header the peer may not send.
pub fn strip(headers: &mut HeaderMap, peer_trusted: bool) {
    let gone: Vec<HeaderName> = headers
        .keys()
        .filter(|n| !allowed(n.as_str(), peer_trusted))
        .cloned()
        .collect();
    for n in gone {
        headers.remove(&n);
    }
}

/// Whether `name` is `X-Forwarded-For` or an `X-Portcullis-*` header spelt with `_`: headers the
/// gateway sets itself, so an alias a CGI-style upstream would read in their place is removed.
pub fn gateway_owned_alias(name: &str) -> bool {
    if !name.contains('_') {
        return false;
    }
    let dashed = name.replace('_', "-").to_ascii_lowercase();
    dashed == "x-forwarded-for" || dashed.starts_with("x-portcullis-")
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
