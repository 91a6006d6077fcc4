//! The bytes of a sealed record: its body, what the entry's hash covers.
//!
//! Two forms are read; one is written.
//!
//! - **Binary (format 1, written since 2026-12):** a fixed layout of typed fields, so that the
//!   audit writer encodes a record with plain pushes into one buffer and hashes about half the
//!   bytes a JSON body holds:
//!
//!   ```text
//!   body     = 0x01 seconds nanos kind present action [tenant] [actor] [key_id]
//!              [request_id] [decision] [reason] detail* 0xFF
//!   seconds  = i64 big-endian (Unix time)      nanos = u32 big-endian (< 10^9)
//!   kind     = u8: 0 request, 1 auth, 2 change, 3 maintenance
//!   present  = u8, a bit per optional field: 1 tenant, 2 actor, 4 key_id, 8 request_id,
//!              16 decision, 32 reason (no other bit set)
//!   decision = u8: 0 allow, 1 deny
//!   string   = length (LEB128) then that many bytes of UTF-8
//!   detail   = tag name value, names unique within a body
//!   name     = u8 n: n < 0x80: an inline name of n bytes follows; 0x80 + i (i < 0x7F): the
//!              i-th of NAMES; 0xFF: a string follows (an inline name of 128 bytes or more)
//!   tag      = 0 null | 1 false | 2 true | 3 unsigned (LEB128) | 4 negative (LEB128 of
//!              -1 - value) | 5 f64 (8 bytes big-endian) | 6 string | 7 IPv4 (4 bytes, read
//!              as its text) | 8 IPv6 (16 bytes, read as its text) | 9 JSON text (an array or
//!              an object)
//!   ```
//!
//!   [`NAMES`] is part of the format: names are only ever appended to it.
//! - **JSON (written before):** the record as compact JSON, starting with `{`. Stored logs keep
//!   their JSON bodies, and their hashes, for good; readers and `audit verify` take both forms.
//!
//! A body reads back as one [`Record`] or is refused ([`BodyError`]): no unknown tag, flag or
//! name index, no trailing byte, no duplicate detail, only valid UTF-8 and times.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Number, Value};
use time::OffsetDateTime;

use crate::record::{Decision, Kind, Record};

/// The first byte of a binary body.
pub const BINARY: u8 = 0x01;

/// Detail names written as one byte (`0x80 + index`). Append only: a stored body names its
/// details by these indexes.
pub const NAMES: [&str; 32] = [
    "method",
    "route",
    "path",
    "status",
    "outcome",
    "latency_us",
    "client_ip",
    "environment",
    "bytes_in",
    "bytes_out",
    "auth",
    "auth_failure",
    "verify_code",
    "user_agent",
    "count",
    "window_seconds",
    "first",
    "last",
    "result",
    "note",
    "before",
    "after",
    "bytes",
    "reason",
    "content_type",
    "scopes",
    "expires_at",
    "name",
    "event_type",
    "event_id",
    "webhook_id",
    "delivery_id",
];

const END: u8 = 0xFF;
const LONG_NAME: u8 = 0xFF;

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_UNSIGNED: u8 = 3;
const TAG_NEGATIVE: u8 = 4;
const TAG_F64: u8 = 5;
const TAG_STRING: u8 = 6;
const TAG_IPV4: u8 = 7;
const TAG_IPV6: u8 = 8;
const TAG_JSON: u8 = 9;

const HAS_TENANT: u8 = 1;
const HAS_ACTOR: u8 = 2;
const HAS_KEY_ID: u8 = 4;
const HAS_REQUEST_ID: u8 = 8;
const HAS_DECISION: u8 = 16;
const HAS_REASON: u8 = 32;

/// The index of `name` in [`NAMES`].
fn name_index(name: &str) -> Option<u8> {
    // Compared by length first: most names match or fail on it.
    NAMES
        .iter()
        .position(|n| n.len() == name.len() && *n == name)
        .and_then(|i| u8::try_from(i).ok())
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Seven low bits with the continuation bit.
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The header of a binary body: everything but the details.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub time: OffsetDateTime,
    pub kind: Kind,
    pub action: &'a str,
    pub tenant: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub decision: Option<Decision>,
    pub reason: Option<&'a str>,
}

impl Header<'_> {
    /// Appends the header; the details follow through the returned writer, which
    /// [`DetailWriter::end`] closes.
    pub fn write<'o>(&self, out: &'o mut Vec<u8>) -> DetailWriter<'o> {
        out.reserve(96);
        out.push(BINARY);
        let t = self.time;
        out.extend_from_slice(&t.unix_timestamp().to_be_bytes());
        out.extend_from_slice(&t.nanosecond().to_be_bytes());
        out.push(match self.kind {
            Kind::Request => 0,
            Kind::Auth => 1,
            Kind::Change => 2,
            Kind::Maintenance => 3,
        });
        let flag = |present: bool, bit: u8| if present { bit } else { 0 };
        out.push(
            flag(self.tenant.is_some(), HAS_TENANT)
                | flag(self.actor.is_some(), HAS_ACTOR)
                | flag(self.key_id.is_some(), HAS_KEY_ID)
                | flag(self.request_id.is_some(), HAS_REQUEST_ID)
                | flag(self.decision.is_some(), HAS_DECISION)
                | flag(self.reason.is_some(), HAS_REASON),
        );
        string(out, self.action);
        for s in [self.tenant, self.actor, self.key_id, self.request_id]
            .into_iter()
            .flatten()
        {
            string(out, s);
        }
        if let Some(d) = self.decision {
            out.push(match d {
                Decision::Allow => 0,
                Decision::Deny => 1,
            });
        }
        if let Some(r) = self.reason {
            string(out, r);
        }
        DetailWriter { out }
    }
}

/// Writes the details of a body, one per call, each name at most once.
#[derive(Debug)]
pub struct DetailWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl DetailWriter<'_> {
    fn name(&mut self, tag: u8, name: &str) {
        self.out.push(tag);
        match name_index(name) {
            Some(i) => self.out.push(0x80 | i),
            None => match u8::try_from(name.len()) {
                Ok(n) if n < 0x80 => {
                    self.out.push(n);
                    self.out.extend_from_slice(name.as_bytes());
                }
                _ => {
                    self.out.push(LONG_NAME);
                    string(self.out, name);
                }
            },
        }
    }

    /// A string detail.
    pub fn str(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.name(TAG_STRING, name);
        string(self.out, value);
        self
    }

    /// A string detail, left out when `None`.
    pub fn opt_str(&mut self, name: &'static str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(name, v);
        }
        self
    }

    /// An unsigned integer detail.
    pub fn u64(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.name(TAG_UNSIGNED, name);
        varint(self.out, value);
        self
    }

    /// An unsigned integer detail, left out when `None`.
    pub fn opt_u64(&mut self, name: &'static str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.u64(name, v);
        }
        self
    }

    /// An IP address detail (read back as its text).
    pub fn ip(&mut self, name: &'static str, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(v4) => {
                self.name(TAG_IPV4, name);
                self.out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.name(TAG_IPV6, name);
                self.out.extend_from_slice(&v6.octets());
            }
        }
        self
    }

    /// Any JSON value as a detail (a [`Record`]'s map).
    pub fn value(&mut self, name: &str, value: &Value) -> &mut Self {
        match value {
            Value::Null => self.name(TAG_NULL, name),
            Value::Bool(false) => self.name(TAG_FALSE, name),
            Value::Bool(true) => self.name(TAG_TRUE, name),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    self.name(TAG_UNSIGNED, name);
                    varint(self.out, u);
                } else if let Some(i) = n.as_i64() {
                    // Negative (a non-negative one is a u64): -1 - i fits in a u64.
                    self.name(TAG_NEGATIVE, name);
                    varint(self.out, !(i as u64));
                } else {
                    self.name(TAG_F64, name);
                    let f = n.as_f64().unwrap_or_default();
                    self.out.extend_from_slice(&f.to_be_bytes());
                }
            }
            Value::String(s) => {
                self.name(TAG_STRING, name);
                string(self.out, s);
            }
            Value::Array(_) | Value::Object(_) => {
                self.name(TAG_JSON, name);
                // Writing a value to a Vec cannot fail.
                let text = serde_json::to_string(value).unwrap_or_default();
                string(self.out, &text);
            }
        }
        self
    }

    /// Closes the body.
    pub fn end(self) {
        self.out.push(END);
    }
}

/// Why a body is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("the body is empty")]
    Empty,
    #[error("unknown body format {0:#04x}")]
    UnknownFormat(u8),
    #[error("the body ends early")]
    Truncated,
    #[error("bytes after the end of the record")]
    Trailing,
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("detail {0:?} appears twice")]
    DuplicateDetail(String),
    #[error("JSON body: {0}")]
    Json(String),
}

/// The record a body holds, in either form.
pub fn read(body: &[u8]) -> Result<Record, BodyError> {
    match body.first() {
        None => Err(BodyError::Empty),
        Some(&BINARY) => Reader { rest: &body[1..] }.record(),
        Some(b'{') => serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string())),
        Some(&other) => Err(BodyError::UnknownFormat(other)),
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        if self.rest.len() < n {
            return Err(BodyError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BodyError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn byte(&mut self) -> Result<u8, BodyError> {
        Ok(self.array::<1>()?[0])
    }

    fn varint(&mut self) -> Result<u64, BodyError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7F);
            if shift == 63 && bits > 1 {
                return Err(BodyError::Invalid("integer"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(BodyError::Invalid("integer"))
    }

    fn string(&mut self) -> Result<&'a str, BodyError> {
        let len = usize::try_from(self.varint()?).map_err(|_| BodyError::Truncated)?;
        std::str::from_utf8(self.take(len)?).map_err(|_| BodyError::Invalid("UTF-8"))
    }

    fn record(mut self) -> Result<Record, BodyError> {
        let seconds = i64::from_be_bytes(self.array()?);
        let nanos = u32::from_be_bytes(self.array()?);
        let time = OffsetDateTime::from_unix_timestamp(seconds)
            .and_then(|t| t.replace_nanosecond(nanos))
            .map_err(|_| BodyError::Invalid("time"))?;
        let kind = match self.byte()? {
            0 => Kind::Request,
            1 => Kind::Auth,
            2 => Kind::Change,
            3 => Kind::Maintenance,
            _ => return Err(BodyError::Invalid("kind")),
        };
        let present = self.byte()?;
        if present & !0x3F != 0 {
            return Err(BodyError::Invalid("field flags"));
        }
        let mut record = Record::new(time, kind, self.string()?);
        let opt = |r: &mut Self, bit: u8| -> Result<Option<String>, BodyError> {
            Ok(if present & bit != 0 {
                Some(r.string()?.to_owned())
            } else {
                None
            })
        };
        record.tenant = opt(&mut self, HAS_TENANT)?;
        record.actor = opt(&mut self, HAS_ACTOR)?;
        record.key_id = opt(&mut self, HAS_KEY_ID)?;
        record.request_id = opt(&mut self, HAS_REQUEST_ID)?;
        if present & HAS_DECISION != 0 {
            record.decision = Some(match self.byte()? {
                0 => Decision::Allow,
                1 => Decision::Deny,
                _ => return Err(BodyError::Invalid("decision")),
            });
        }
        record.reason = opt(&mut self, HAS_REASON)?;
        record.data = self.details()?;
        if !self.rest.is_empty() {
            return Err(BodyError::Trailing);
        }
        Ok(record)
    }

    fn details(&mut self) -> Result<Map<String, Value>, BodyError> {
        let mut data = Map::new();
        loop {
            let tag = self.byte()?;
            if tag == END {
                return Ok(data);
            }
            let name = match self.byte()? {
                n if n < 0x80 => std::str::from_utf8(self.take(usize::from(n))?)
                    .map_err(|_| BodyError::Invalid("UTF-8"))?,
                LONG_NAME => self.string()?,
                i => *NAMES
                    .get(usize::from(i & 0x7F))
                    .ok_or(BodyError::Invalid("name index"))?,
            };
            let value = match tag {
                TAG_NULL => Value::Null,
                TAG_FALSE => Value::Bool(false),
                TAG_TRUE => Value::Bool(true),
                TAG_UNSIGNED => Value::from(self.varint()?),
                TAG_NEGATIVE => {
                    let v = self.varint()?;
                    // -1 - v, which fits in an i64 when v < 2^63.
                    let i = i64::try_from(v).map_err(|_| BodyError::Invalid("integer"))?;
                    Value::from(-1 - i)
                }
                TAG_F64 => {
                    let f = f64::from_be_bytes(self.array()?);
                    Value::Number(Number::from_f64(f).ok_or(BodyError::Invalid("number"))?)
                }
                TAG_STRING => Value::String(self.string()?.to_owned()),
                TAG_IPV4 => Value::String(Ipv4Addr::from(self.array::<4>()?).to_string()),
                TAG_IPV6 => Value::String(Ipv6Addr::from(self.array::<16>()?).to_string()),
                TAG_JSON => {
                    let v: Value = serde_json::from_str(self.string()?)
                        .map_err(|_| BodyError::Invalid("JSON detail"))?;
                    if !(v.is_array() || v.is_object()) {
                        return Err(BodyError::Invalid("JSON detail"));
                    }
                    v
                }
                _ => return Err(BodyError::Invalid("detail tag")),
            };
            if data.contains_key(name) {
                return Err(BodyError::DuplicateDetail(name.to_owned()));
            }
            data.insert(name.to_owned(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn header(time: OffsetDateTime) -> Header<'static> {
        Header {
            time,
            kind: Kind::Request,
            action: "request",
            tenant: Some("acme"),
            actor: None,
            key_id: Some("key_1"),
            request_id: None,
            decision: Some(Decision::Deny),
            reason: Some("rate_limited"),
        }
    }

    fn written(f: impl FnOnce(&mut DetailWriter<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        let mut d = header(datetime!(2026-12-05 10:00:00.5 UTC)).write(&mut out);
        f(&mut d);
        d.end();
        out
    }

    #[test]
    fn typed_details_read_back_as_a_records_values() {
        let body = written(|d| {
            d.str("method", "GET")
                .u64("status", 429)
                .ip("client_ip", "10.1.2.3".parse().unwrap())
                .ip("peer", "2001:db8::1".parse().unwrap())
                .opt_u64("bytes_in", None)
                .opt_str("auth", Some("bearer"));
        });
        let r = read(&body).unwrap();
        assert_eq!(r.time, datetime!(2026-12-05 10:00:00.5 UTC));
        assert_eq!(r.tenant.as_deref(), Some("acme"));
        assert_eq!(r.key_id.as_deref(), Some("key_1"));
        assert_eq!(r.decision, Some(Decision::Deny));
        assert_eq!(r.reason.as_deref(), Some("rate_limited"));
        assert_eq!(
            Value::Object(r.data),
            serde_json::json!({
                "method": "GET", "status": 429, "client_ip": "10.1.2.3",
                "peer": "2001:db8::1", "auth": "bearer"
            })
        );
    }

    #[test]
    fn the_name_table_only_grows() {
        // Stored bodies name details by index: these must never move.
        assert_eq!(&NAMES[..4], ["method", "route", "path", "status"]);
        assert_eq!(NAMES[6], "client_ip");
        assert_eq!(NAMES[12], "verify_code");
        assert_eq!(NAMES[31], "delivery_id");
        let mut seen = std::collections::HashSet::new();
        assert!(NAMES.iter().all(|n| seen.insert(n) && n.len() < 0x80));
    }

    #[test]
    fn malformed_bodies_are_refused_never_misread() {
        let good = written(|d| {
            d.u64("status", 200);
        });
        assert!(read(&good).is_ok());
        assert_eq!(read(&[]), Err(BodyError::Empty));
        assert_eq!(read(&[0x02]), Err(BodyError::UnknownFormat(2)));
        for cut in 1..good.len() {
            assert!(read(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(read(&trailing), Err(BodyError::Trailing));
        let dup = written(|d| {
            d.u64("status", 200).u64("status", 201);
        });
        assert_eq!(
            read(&dup),
            Err(BodyError::DuplicateDetail("status".to_owned()))
        );
        let mut bad_kind = good.clone();
        bad_kind[13] = 9;
        assert_eq!(read(&bad_kind), Err(BodyError::Invalid("kind")));
        let mut bad_flags = good.clone();
        bad_flags[14] |= 0x40;
        assert_eq!(read(&bad_flags), Err(BodyError::Invalid("field flags")));
        let mut bad_nanos = good;
        bad_nanos[9..13].copy_from_slice(&1_000_000_000u32.to_be_bytes());
        assert_eq!(read(&bad_nanos), Err(BodyError::Invalid("time")));
    }

    #[test]
    fn json_bodies_of_earlier_logs_are_read() {
        let body = br#"{"time":"2026-01-02T03:04:05Z","kind":"change","action":"key.create","tenant":"acme","data":{"i":1}}"#;
        let r = read(body).unwrap();
        assert_eq!((r.kind, r.action.as_str()), (Kind::Change, "key.create"));
        assert_eq!(r.data["i"], 1);
        assert!(matches!(read(b"{\"time\":1}"), Err(BodyError::Json(_))));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{0,3}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn every_record_reads_back_as_itself(
            strings in proptest::collection::vec(proptest::option::of(".*"), 6),
            seconds in -62_167_219_200i64..253_402_300_799,
            nanos in 0u32..1_000_000_000,
            kind in 0usize..4,
            decision in proptest::option::of(any::<bool>()),
            details in proptest::collection::btree_map(
                prop_oneof![".*", "[a-z_]{0,12}", ".{130,140}"], value(), 0..6),
        ) {
            let kind = [Kind::Request, Kind::Auth, Kind::Change, Kind::Maintenance][kind];
            let time = OffsetDateTime::from_unix_timestamp(seconds)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap();
            let mut r = Record::new(time, kind, strings[0].clone().unwrap_or_default());
            r.tenant = strings[1].clone();
            r.actor = strings[2].clone();
            r.key_id = strings[3].clone();
            r.request_id = strings[4].clone();
            r.reason = strings[5].clone();
            r.decision = decision.map(|d| if d { Decision::Allow } else { Decision::Deny });
            r.data = details.into_iter().collect();
            let body = r.to_body();
            prop_assert_eq!(body[0], BINARY);
            let back = read(&body).unwrap();
            // JSON nested in a detail goes through serde_json's float parsing: those details
            // are compared as serde_json reads them back.
            for (name, value) in &mut r.data {
                if value.is_array() || value.is_object() {
                    *value = serde_json::from_str(&value.to_string()).unwrap();
                }
                prop_assert!(back.data.contains_key(name));
            }
            prop_assert_eq!(back, r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut body = vec![BINARY];
            body.extend(bytes);
            let _ = read(&body);
        }
    }
}
