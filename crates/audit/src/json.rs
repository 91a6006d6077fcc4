//! Writing record bodies: compact JSON, byte for byte as serde_json writes it (the same string
//! escapes, the same numbers), without serde's machinery. The audit writer serialises every
//! record on the request core, so a body is written by plain pushes into one buffer: a string
//! that needs no escape (nearly every one) is copied whole.
//!
//! Only what bodies hold is offered: objects with `&'static str` keys (known to need no
//! escape), strings, unsigned integers, and values written by a closure (nested objects, a
//! serde value).
use std::{fmt::Display, io::Write as _, net::IpAddr};

/// An object being written into `out`; [`Object::end`] closes it.
#[derive(Debug)]
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Starts an object at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Writes `"key":` (after a comma unless it is the first member). Keys are names in the
    /// code, never input: they need no escape (checked in debug builds).
    fn key(&mut self, key: &'static str) {
        debug_assert!(!needs_escape(key.as_bytes()), "key {key:?}");
        if !std::mem::take(&mut self.empty) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string member.
    pub fn str(&mut self, key: &'static str, value: &str) -> &mut Self {
        self.key(key);
        string(self.out, value);
        self
    }

    /// A string member, left out when `None`.
    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    /// A string member written by `Display` — for values whose text never needs an escape
    /// (IP addresses); checked in debug builds.
    pub fn display(&mut self, key: &'static str, value: &dyn Display) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        let start = self.out.len();
        // Writing to a Vec cannot fail.
        let _ = write!(self.out, "{value}");
        debug_assert!(!needs_escape(&self.out[start..]));
        self.out.push(b'"');
        self
    }

    /// An IP address as a string member (IPv4 written digit by digit, IPv6 as `Display`
    /// writes it).
    pub fn ip(&mut self, key: &'static str, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(v4) => {
                self.key(key);
                self.out.push(b'"');
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.out.push(b'.');
                    }
                    self.out
                        .extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
                }
                self.out.push(b'"');
                self
            }
            IpAddr::V6(v6) => self.display(key, &v6),
        }
    }

    /// An unsigned integer member.
    pub fn u64(&mut self, key: &'static str, value: u64) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// An unsigned integer member, left out when `None`.
    pub fn opt_u64(&mut self, key: &'static str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.u64(key, v);
        }
        self
    }

    /// A member whose value `write` appends (a nested object, a serde value): it must write
    /// exactly one JSON value.
    pub fn value(&mut self, key: &'static str, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        self.key(key);
        write(self.out);
        self
    }

    /// Closes the object.
    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it: `"` and `\` with a
/// backslash, the control characters below U+0020 as `\b \t \n \f \r` or `\u00xx` (lower-case
/// hex), everything else as is (UTF-8 included).
pub fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if needs_escape(bytes) {
        escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Does any byte of `bytes` need an escape? Written without an early exit, so that the
/// compiler checks many bytes at once (the strings of a body are short and clean).
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(s: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_control: String = (0u8..0x20).map(char::from).collect();
        every_control.push_str("\"\\/\u{7f}é€😀");
        for s in [
            "",
            "plain",
            &every_control,
            "a\"b",
            "\\",
            "line\nbreak",
            "tab\tand\u{1}",
        ] {
            assert_eq!(written(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in any::<String>()) {
            prop_assert_eq!(written(&s), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn objects_are_written_as_serde_json_writes_them(
            a in any::<String>(),
            b in proptest::option::of(any::<String>()),
            n in any::<u64>(),
            m in proptest::option::of(any::<u64>()),
        ) {
            let mut out = Vec::new();
            let mut o = Object::begin(&mut out);
            o.str("a", &a).opt_str("b", b.as_deref()).u64("n", n).opt_u64("m", m);
            o.value("inner", |out| {
                let mut i = Object::begin(out);
                i.display("ip", &std::net::Ipv4Addr::new(10, 0, 0, 1));
                i.ip("v4", IpAddr::from([192, 168, 0, 254]));
                i.ip("v6", "2001:db8::1".parse().unwrap());
                i.end();
            });
            o.end();
            let mut expected = serde_json::Map::new();
            expected.insert("a".into(), a.into());
            if let Some(b) = b {
                expected.insert("b".into(), b.into());
            }
            expected.insert("n".into(), n.into());
            if let Some(m) = m {
                expected.insert("m".into(), m.into());
            }
            expected.insert("inner".into(), serde_json::json!({
                "ip": "10.0.0.1", "v4": "192.168.0.254", "v6": "2001:db8::1"
            }));
            let back: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, expected);
        }
    }

    #[test]
    fn members_are_separated_and_objects_closed() {
        let mut out = Vec::new();
        let mut o = Object::begin(&mut out);
        o.str("k", "v")
            .opt_str("gone", None)
            .u64("n", 0)
            .opt_u64("x", None);
        o.value("o", |out| Object::begin(out).end());
        o.end();
        assert_eq!(out, br#"{"k":"v","n":0,"o":{}}"#);
        let mut out = Vec::new();
        Object::begin(&mut out).end();
        assert_eq!(out, b"{}");
    }
}
