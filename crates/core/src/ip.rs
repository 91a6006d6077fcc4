//! IP allowlists: IPv4 and IPv6 CIDRs (plain addresses count as /32 or /128).
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{error::ValidationError, limits};

/// A key's allowlist. Empty means any address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IpAllowlist(Vec<IpNet>);

impl IpAllowlist {
    /// Parses entries; host bits are cleared (`10.1.2.3/8` → `10.0.0.0/8`), duplicates removed.
    pub fn parse<S: AsRef<str>>(input: &[S]) -> Result<Self, ValidationError> {
        if input.len() > limits::MAX_CIDRS {
            return Err(ValidationError::TooManyCidrs);
        }
        let mut nets = input
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let s = s.as_ref().trim();
                s.parse::<IpNet>()
                    .map(|n| n.trunc())
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ValidationError::InvalidCidr { index })
            })
            .collect::<Result<Vec<_>, _>>()?;
        nets.sort();
        nets.dedup();
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn entries(&self) -> &[IpNet] {
        &self.0
    }

    /// Strings of the entries, for storage and output.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Is `ip` allowed? An IPv4-mapped IPv6 address is checked as the IPv4 address it carries.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// Parses `trusted_proxies` entries (CIDRs or single addresses); `Err` quotes the bad entry.
pub fn parse_trusted_proxies(entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("trusted_proxies: {s:?} is not a CIDR"))
        })
        .collect()
}

/// Maps `::ffff:a.b.c.d` to `a.b.c.d`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The unit in which per-client limits count a client (failed authentications, connections): an
/// IPv4 address (an IPv4-mapped IPv6 address counts as its IPv4 address), or an IPv6 /64 — one
/// host commonly holds a whole /64, so counting single IPv6 addresses would set no limit at all.
pub fn client_group(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn client_groups_are_ipv4_addresses_and_ipv6_64s() {
        assert_eq!(
            client_group(ip("2001:db8:1:2:aaaa::1")),
            client_group(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            client_group(ip("2001:db8:1:2::1")),
            client_group(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_group(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(client_group(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn checks() {
        let l = IpAllowlist::parse(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]).expect("valid");
        assert!(l.allows(ip("10.200.1.1")));
        assert!(!l.allows(ip("11.0.0.1")));
        assert!(l.allows(ip("192.168.1.7")));
        assert!(!l.allows(ip("192.168.1.8")));
        assert!(l.allows(ip("2001:db8:1::5")));
        assert!(!l.allows(ip("2001:db9::1")));
        assert!(
            l.allows(ip("::ffff:10.1.1.1")),
            "v4-mapped v6 checked as v4"
        );
        assert!(IpAllowlist::default().allows(ip("1.2.3.4")));
    }

    #[test]
    fn normalises_and_rejects() {
        let l = IpAllowlist::parse(&["10.1.2.3/8", "10.0.0.0/8"]).expect("valid");
        assert_eq!(l.to_strings(), vec!["10.0.0.0/8"]);
        assert_eq!(
            IpAllowlist::parse(&["10.0.0.0/8", "10.0.0.0/33"]),
            Err(ValidationError::InvalidCidr { index: 1 })
        );
        assert_eq!(
            IpAllowlist::parse(&["example.com"]),
            Err(ValidationError::InvalidCidr { index: 0 })
        );
        let many: Vec<String> = (0..=limits::MAX_CIDRS)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        assert_eq!(
            IpAllowlist::parse(&many),
            Err(ValidationError::TooManyCidrs)
        );
    }

    proptest! {
        #[test]
        fn v4_prefix_membership(a in any::<u32>(), b in any::<u32>(), len in 0u8..=32) {
            let net = format!("{}/{len}", Ipv4Addr::from(a));
            let l = IpAllowlist::parse(&[net]).expect("valid");
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            let expected = (a & mask) == (b & mask);
            prop_assert_eq!(l.allows(IpAddr::V4(Ipv4Addr::from(b))), expected);
        }
    }
}
