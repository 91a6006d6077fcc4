//! Which hosts and addresses an outbound request made on a tenant's behalf (a webhook
//! delivery) may reach: public unicast addresses only. Everything else — loopback, private
//! (RFC 1918), shared (CGNAT 100.64/10), link-local (cloud metadata 169.254.169.254,
//! `fe80::/10`), unique-local `fc00::/7`, multicast, unspecified, broadcast, documentation,
//! benchmarking and reserved ranges — is refused, also when it hides inside an IPv6 form
//! (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16`), and so are names that lead inside (`localhost`, `*.internal`, cloud metadata
//! names, single-label names resolved through search domains).
//!
//! Pure functions: the caller resolves names itself and connects only to an address
//! [`check_ip`] allows (so a DNS answer that changes between check and use changes nothing).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a host or address is refused, in a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    #[error("loopback address")]
    Loopback,
    #[error("private address")]
    Private,
    #[error("link-local address")]
    LinkLocal,
    #[error("multicast address")]
    Multicast,
    #[error("unspecified address")]
    Unspecified,
    #[error("documentation, benchmarking or reserved address")]
    Reserved,
    #[error("internal host name")]
    InternalName,
}

/// A host as written in a URL, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An address literal (also a legacy IPv4 form such as `2130706433` or `0x7f.1`).
    Ip(IpAddr),
    /// A DNS name, lower-cased, without a trailing dot: resolve it, then [`check_ip`] each
    /// address.
    Name(String),
}

fn v4_in(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

/// Why `ip` is refused, or `Ok` for a public unicast IPv4 address.
pub fn check_ipv4(ip: Ipv4Addr) -> Result<(), Refused> {
    use Refused::*;
    const RANGES: [([u8; 4], u32, Refused); 16] = [
        ([0, 0, 0, 0], 8, Unspecified),       // "this network"
        ([10, 0, 0, 0], 8, Private),          // RFC 1918
        ([100, 64, 0, 0], 10, Private),       // shared address space (CGNAT)
        ([127, 0, 0, 0], 8, Loopback),        //
        ([169, 254, 0, 0], 16, LinkLocal),    // incl. cloud metadata
        ([172, 16, 0, 0], 12, Private),       // RFC 1918
        ([192, 0, 0, 0], 24, Reserved),       // IETF protocol assignments
        ([192, 0, 2, 0], 24, Reserved),       // TEST-NET-1
        ([192, 88, 99, 0], 24, Reserved),     // 6to4 relay anycast
        ([192, 168, 0, 0], 16, Private),      // RFC 1918
        ([198, 18, 0, 0], 15, Reserved),      // benchmarking
        ([198, 51, 100, 0], 24, Reserved),    // TEST-NET-2
        ([203, 0, 113, 0], 24, Reserved),     // TEST-NET-3
        ([224, 0, 0, 0], 4, Multicast),       //
        ([240, 0, 0, 0], 4, Reserved),        // reserved, incl. broadcast
        ([255, 255, 255, 255], 32, Reserved), // limited broadcast
    ];
    match RANGES.iter().find(|(net, bits, _)| v4_in(ip, *net, *bits)) {
        Some((_, _, why)) => Err(*why),
        None => Ok(()),
    }
}

/// The IPv4 address an IPv6 address carries in a form that reaches it: IPv4-mapped
/// (`::ffff:0:0/96`), IPv4-compatible (`::/96`), NAT64 well-known prefix (`64:ff9b::/96`) or
/// 6to4 (`2002::/16`).
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(last),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last),
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}

/// Why `ip` is refused, or `Ok` for a public unicast IPv6 address (global unicast
/// `2000::/3` outside the special ranges, or a form of a public IPv4 address).
pub fn check_ipv6(ip: Ipv6Addr) -> Result<(), Refused> {
    use Refused::*;
    if ip.is_unspecified() {
        return Err(Unspecified);
    }
    if ip.is_loopback() {
        return Err(Loopback);
    }
    if let Some(v4) = embedded_ipv4(ip) {
        return check_ipv4(v4);
    }
    let s = ip.segments();
    match s[0] {
        0xff00..=0xffff => Err(Multicast),
        0xfe80..=0xfebf => Err(LinkLocal),
        0xfec0..=0xfeff => Err(Private), // site-local (deprecated)
        0xfc00..=0xfdff => Err(Private), // unique local
        // IETF protocol assignments (incl. Teredo 2001::/32, which hides an IPv4 address)
        // and documentation (2001:db8::/32, 3fff::/20).
        0x2001 if s[1] < 0x0200 || s[1] == 0x0db8 => Err(Reserved),
        0x3fff if s[1] < 0x1000 => Err(Reserved),
        // SRv6 SIDs.
        0x5f00 => Err(Reserved),
        0x2000..=0x3fff => Ok(()),
        // Local-use NAT64 (64:ff9b:1::/48), discard-only (100::/64) and everything
        // unassigned outside global unicast.
        _ => Err(Reserved),
    }
}

/// Why `ip` is refused, or `Ok` for a public unicast address.
pub fn check_ip(ip: IpAddr) -> Result<(), Refused> {
    match ip {
        IpAddr::V4(v4) => check_ipv4(v4),
        IpAddr::V6(v6) => check_ipv6(v6),
    }
}

/// One part of a legacy IPv4 form: decimal, octal (`0` prefix) or hex (`0x` prefix).
fn ipv4_part(p: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        return (radix == 16).then_some(0);
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// A host whose last label is a number is an IPv4 address to resolvers (`inet_aton`) and
/// browsers (WHATWG URL) alike: `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`. `Some(None)`
/// when it is such a form but no valid address.
fn legacy_ipv4(host: &str) -> Option<Option<Ipv4Addr>> {
    let last = host.rsplit('.').next().unwrap_or(host);
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || (last.len() >= 2
                && last[..2].eq_ignore_ascii_case("0x")
                && last[2..].bytes().all(|b| b.is_ascii_hexdigit())));
    if !numeric {
        return None;
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return Some(None);
    }
    let Some(nums) = parts
        .iter()
        .map(|p| ipv4_part(p))
        .collect::<Option<Vec<u64>>>()
    else {
        return Some(None);
    };
    let (head, tail) = nums.split_at(nums.len() - 1);
    if head.iter().any(|n| *n > 255) {
        return Some(None);
    }
    let room = 8 * (5 - nums.len() as u32);
    if tail[0] >= 1u64 << room {
        return Some(None);
    }
    let mut v = tail[0];
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    Some(u32::try_from(v).ok().map(Ipv4Addr::from))
}

/// Whether a DNS name leads inside: `localhost` and `*.localhost`, the private-use and
/// link-local suffixes (`.internal`, `.local`, `.localdomain`, `.home.arpa`, `.lan`), cloud
/// metadata names, and single-label names (completed by the resolver's search domains).
fn internal_name(name: &str) -> bool {
    const NAMES: [&str; 4] = [
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data.ec2.internal",
    ];
    const SUFFIXES: [&str; 6] = [
        "localhost",
        "internal",
        "local",
        "localdomain",
        "home.arpa",
        "lan",
    ];
    !name.contains('.')
        || NAMES.contains(&name)
        || SUFFIXES
            .iter()
            .any(|s| name == *s || name.strip_suffix(s).is_some_and(|p| p.ends_with('.')))
}

/// Checks a URL's host (`example.com`, `10.0.0.1`, `[::1]`, any case, an optional trailing
/// dot): a refused address literal or internal name is `Err`; otherwise what to connect to.
/// A name still has to be resolved, and each of its addresses checked, at connection time.
pub fn check_host(host: &str) -> Result<Host, Refused> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(v6) = bare {
        let ip: Ipv6Addr = v6.parse().map_err(|_| Refused::Reserved)?;
        return check_ipv6(ip).map(|()| Host::Ip(IpAddr::V6(ip)));
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if let Ok(ip) = name.parse::<IpAddr>() {
        return check_ip(ip).map(|()| Host::Ip(ip));
    }
    match legacy_ipv4(&name) {
        Some(Some(ip)) => return check_ipv4(ip).map(|()| Host::Ip(IpAddr::V4(ip))),
        Some(None) => return Err(Refused::Reserved),
        None => {}
    }
    if name.is_empty() || internal_name(&name) {
        return Err(Refused::InternalName);
    }
    Ok(Host::Name(name))
}

#[cfg(test)]
#[path = "outbound_tests.rs"]
mod tests;
