//! Tests of [`super`]: known cases, then properties over generated addresses in every form a
//! resolver or a URL can write them.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;
use proptest::prelude::*;

use super::*;

/// Every IPv4 network that is not public, written independently of the code under test.
const NOT_PUBLIC_V4: [&str; 16] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
];

fn not_public(ip: Ipv4Addr) -> bool {
    NOT_PUBLIC_V4
        .iter()
        .any(|n| n.parse::<Ipv4Net>().unwrap().contains(&ip))
}

/// Every IPv6 form that carries `v4` to a connection.
fn v6_forms(v4: Ipv4Addr) -> Vec<Ipv6Addr> {
    let [a, b, c, d] = v4.octets();
    let hi = u16::from_be_bytes([a, b]);
    let lo = u16::from_be_bytes([c, d]);
    vec![
        v4.to_ipv6_mapped(),
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo),
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
        Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
    ]
}

/// Every way a URL host can write `v4`.
fn host_forms(v4: Ipv4Addr) -> Vec<String> {
    let n = u32::from(v4);
    let [a, b, c, d] = v4.octets();
    let mut forms = vec![
        v4.to_string(),
        format!("{v4}."),
        n.to_string(),
        format!("0x{n:x}"),
        format!("0X{n:X}"),
        format!("{a}.{}", n & 0x00ff_ffff),
        format!("{a}.{b}.{}", n & 0xffff),
        format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
    ];
    forms.extend(v6_forms(v4).into_iter().map(|v6| format!("[{v6}]")));
    forms
}

#[test]
fn known_addresses() {
    for bad in [
        "127.0.0.1",
        "10.1.2.3",
        "172.31.255.255",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "192.0.2.10",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "2002:7f00:1::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "2001::1",
        "3fff::1",
        "100::1",
    ] {
        assert!(check_ip(bad.parse().unwrap()).is_err(), "{bad}");
    }
    for good in [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.0",
        "172.32.0.1",
        "2606:4700:4700::1111",
        "2a00:1450::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ] {
        assert_eq!(check_ip(good.parse().unwrap()), Ok(()), "{good}");
    }
    assert_eq!(
        check_ip("169.254.169.254".parse().unwrap()),
        Err(Refused::LinkLocal)
    );
}

#[test]
fn known_hosts() {
    for bad in [
        "localhost",
        "LOCALHOST.",
        "app.localhost",
        "metadata.google.internal",
        "metadata.google.internal.",
        "metadata",
        "intranet",
        "db.corp.internal",
        "printer.local",
        "nas.home.arpa",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::1]",
        "[::ffff:7f00:1]",
        "1.2.3.4.5",
        "256.1.1.1",
        "[not-v6]",
        "",
    ] {
        assert!(check_host(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        check_host("Hooks.Example.COM."),
        Ok(Host::Name("hooks.example.com".into()))
    );
    assert_eq!(
        check_host("8.8.8.8"),
        Ok(Host::Ip("8.8.8.8".parse().unwrap()))
    );
    assert_eq!(
        check_host("134744072"),
        Ok(Host::Ip("8.8.8.8".parse().unwrap()))
    );
    assert_eq!(
        check_host("[2606:4700::1]"),
        Ok(Host::Ip("2606:4700::1".parse().unwrap()))
    );
    assert_eq!(check_host("hooks.example.com").map(|_| ()), Ok(()));
}

fn any_v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn in_net(net: &'static str) -> impl Strategy<Value = Ipv4Addr> {
    let net: Ipv4Net = net.parse().unwrap();
    let base = u32::from(net.network());
    let size = 1u64 << (32 - net.prefix_len());
    (0..size).prop_map(move |off| Ipv4Addr::from(base + off as u32))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Every loopback address is refused, as an address in every IPv6 form and as a URL host
    /// in every spelling.
    #[test]
    fn loopback_is_refused_in_every_form(v4 in in_net("127.0.0.0/8")) {
        prop_assert_eq!(check_ipv4(v4), Err(Refused::Loopback));
        for v6 in v6_forms(v4) {
            prop_assert_eq!(check_ip(IpAddr::V6(v6)), Err(Refused::Loopback), "{}", v6);
        }
        for h in host_forms(v4) {
            prop_assert!(check_host(&h).is_err(), "{}", h);
        }
    }

    /// Every address of every non-public IPv4 range is refused in every form.
    #[test]
    fn non_public_v4_is_refused_in_every_form(
        v4 in prop_oneof![
            in_net("0.0.0.0/8"), in_net("10.0.0.0/8"), in_net("100.64.0.0/10"),
            in_net("169.254.0.0/16"), in_net("172.16.0.0/12"), in_net("192.0.0.0/24"),
            in_net("192.0.2.0/24"), in_net("192.168.0.0/16"), in_net("198.18.0.0/15"),
            in_net("198.51.100.0/24"), in_net("203.0.113.0/24"), in_net("224.0.0.0/4"),
            in_net("240.0.0.0/4"),
        ]
    ) {
        prop_assert!(check_ipv4(v4).is_err());
        for v6 in v6_forms(v4) {
            prop_assert!(check_ip(IpAddr::V6(v6)).is_err(), "{}", v6);
        }
        for h in host_forms(v4) {
            prop_assert!(check_host(&h).is_err(), "{}", h);
        }
    }

    /// An IPv4 address and its reaching IPv6 forms are judged alike; a public one is allowed
    /// in every form and spelling, to that very address.
    #[test]
    fn ipv4_forms_agree_and_public_ones_pass(v4 in any_v4()) {
        let verdict = check_ipv4(v4);
        prop_assert_eq!(verdict.is_ok(), !not_public(v4));
        for v6 in v6_forms(v4) {
            prop_assert_eq!(check_ip(IpAddr::V6(v6)), verdict, "{}", v6);
        }
        if verdict.is_ok() {
            for h in host_forms(v4).into_iter().filter(|h| !h.starts_with('[')) {
                prop_assert_eq!(check_host(&h), Ok(Host::Ip(IpAddr::V4(v4))), "{}", h);
            }
        }
    }

    /// Generated global unicast IPv6 addresses outside the special ranges are allowed; every
    /// address under fc00::/7, fe80::/10 and ff00::/8 is refused.
    #[test]
    fn ipv6_classes(bits in any::<u128>()) {
        let global = Ipv6Addr::from((bits & (u128::MAX >> 3)) | (1u128 << 125));
        let s = global.segments();
        let special = s[0] == 0x2002
            || (s[0] == 0x2001 && (s[1] < 0x200 || s[1] == 0xdb8))
            || (s[0] == 0x3fff && s[1] < 0x1000);
        if !special {
            prop_assert_eq!(check_ipv6(global), Ok(()), "{}", global);
        }
        for (prefix, len) in [(0xfc00u128, 7), (0xfe80, 10), (0xff00, 8)] {
            let net = prefix << 112;
            let v6 = Ipv6Addr::from(net | (bits >> len));
            prop_assert!(check_ipv6(v6).is_err(), "{}", v6);
        }
    }
}
