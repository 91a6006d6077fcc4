//! Audit records and sealed entries.
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::body::{BodyError, DetailWriter, Header};

/// The chain of records that belong to no tenant (operator actions on the whole deployment,
/// requests whose tenant is unknown). Not a valid tenant slug, so it never collides with one.
pub const SYSTEM_CHAIN: &str = "_system";

/// The longest action name accepted (`key.create`, `request`, `auth.failure`, …).
pub const MAX_ACTION_LEN: usize = 64;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An API or proxied request.
    Request,
    /// An authentication attempt (failures included).
    Auth,
    /// A change to tenants, keys, admin keys or configuration.
    Change,
    /// Audit maintenance: retention purge, export.
    Maintenance,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Auth => "auth",
            Self::Change => "change",
            Self::Maintenance => "maintenance",
        }
    }
}

/// The outcome a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

/// One audit record as its producer builds it. Never holds a secret: producers put a key's
/// non-secret hint and id in it, never the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    #[serde(with = "rfc3339")]
    pub time: OffsetDateTime,
    pub kind: Kind,
    /// `request`, `auth.failure`, `key.create`, `audit.purge`, …
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Who did it: an admin key id, `operator` (the CLI), or the calling key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The reason code of a decision (`invalid_api_key`, `rate_limited`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details: method, route, status, latency, bytes, client IP, upload facts, before / after.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
}

impl Record {
    /// A record of `kind` and `action` at `time`, with nothing else set.
    pub fn new(time: OffsetDateTime, kind: Kind, action: impl Into<String>) -> Self {
        Self {
            time,
            kind,
            action: action.into(),
            tenant: None,
            actor: None,
            key_id: None,
            request_id: None,
            decision: None,
            reason: None,
            data: Map::new(),
        }
    }

    /// The chain this record belongs to: its tenant's, or [`SYSTEM_CHAIN`].
    pub fn chain(&self) -> &str {
        self.tenant.as_deref().unwrap_or(SYSTEM_CHAIN)
    }

    /// Adds one detail.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.data.insert(name.to_owned(), value.into());
        self
    }

    /// The body: the record in the binary form ([`crate::body`]), details in the order of its
    /// map. The hash covers these exact bytes, which are never written again to be checked.
    pub fn to_body(&self) -> Vec<u8> {
        Sealable::to_body(self)
    }

    /// The record a body holds (either form, [`crate::body::read`]).
    pub fn from_body(body: &[u8]) -> Result<Self, BodyError> {
        crate::body::read(body)
    }
}

impl Sealable for Record {
    fn chain(&self) -> &str {
        Record::chain(self)
    }

    fn time(&self) -> OffsetDateTime {
        self.time
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        Body {
            time: self.time,
            kind: self.kind,
            action: &self.action,
            tenant: self.tenant.as_deref(),
            actor: self.actor.as_deref(),
            key_id: self.key_id.as_deref(),
            request_id: self.request_id.as_deref(),
            decision: self.decision,
            reason: self.reason.as_deref(),
            data: &self.data,
        }
        .write(out);
    }
}

/// What the audit writer seals: a [`Record`], or a producer's own type that writes the same
/// body without building a `Record` first (the request records: no map, no string per
/// detail on the request path). Its body must read back as a [`Record`].
pub trait Sealable: fmt::Debug + Send + Sync + 'static {
    /// The chain it belongs to: its tenant's, or [`SYSTEM_CHAIN`].
    fn chain(&self) -> &str;
    /// When it happened.
    fn time(&self) -> OffsetDateTime;
    /// Appends the body (the binary form of [`crate::body`], written through [`Body`]) to
    /// `out`.
    fn write_body(&self, out: &mut Vec<u8>);

    /// The body.
    fn to_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_body(&mut out);
        out
    }
}

/// Every body: a [`Record`]'s fields, borrowed, with the details `D` (a map, or a type of the
/// producer's that writes its own details).
#[derive(Debug)]
pub struct Body<'a, D: Details> {
    pub time: OffsetDateTime,
    pub kind: Kind,
    pub action: &'a str,
    pub tenant: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub decision: Option<Decision>,
    pub reason: Option<&'a str>,
    pub data: D,
}

/// The `data` of a body: writes its details, each name once.
pub trait Details {
    fn write(&self, out: &mut DetailWriter<'_>);
}

impl Details for &Map<String, Value> {
    fn write(&self, out: &mut DetailWriter<'_>) {
        for (name, value) in *self {
            out.value(name, value);
        }
    }
}

impl<D: Details> Body<'_, D> {
    /// Appends the body to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut details = Header {
            time: self.time,
            kind: self.kind,
            action: self.action,
            tenant: self.tenant,
            actor: self.actor,
            key_id: self.key_id,
            request_id: self.request_id,
            decision: self.decision,
            reason: self.reason,
        }
        .write(out);
        self.data.write(&mut details);
        details.end();
    }
}

/// RFC 3339 times as the bodies hold them (`2026-01-02T03:04:05.123456Z`, UTC, the fraction
/// without trailing zeros and left out when zero), written without the general formatter of
/// `time` (one of the larger costs of a record); read back with it.
pub mod rfc3339 {
    use serde::{Deserializer, Serializer};
    use time::OffsetDateTime;

    /// The longest output: `-9999-12-31T23:59:59.999999999Z` is 31 bytes.
    const MAX: usize = 32;

    /// Writes `t` (in UTC) into `buf`; returns the length written.
    pub fn format_into(t: OffsetDateTime, buf: &mut [u8; MAX]) -> usize {
        let t = t.to_offset(time::UtcOffset::UTC);
        let mut n = 0;
        let mut put = |b: u8| {
            buf[n] = b;
            n += 1;
        };
        let year = t.year();
        if !(0..=9999).contains(&year) {
            // Outside RFC 3339's range: the general formatter's answer (an error) is left to it.
            return 0;
        }
        let two = |v: u8, put: &mut dyn FnMut(u8)| {
            put(b'0' + v / 10);
            put(b'0' + v % 10);
        };
        let y = u16::try_from(year).unwrap_or(0);
        two(u8::try_from(y / 100).unwrap_or(0), &mut put);
        two(u8::try_from(y % 100).unwrap_or(0), &mut put);
        put(b'-');
        two(u8::from(t.month()), &mut put);
        put(b'-');
        two(t.day(), &mut put);
        put(b'T');
        two(t.hour(), &mut put);
        put(b':');
        two(t.minute(), &mut put);
        put(b':');
        two(t.second(), &mut put);
        let mut nanos = t.nanosecond();
        if nanos != 0 {
            put(b'.');
            let mut digits = 9;
            while nanos.is_multiple_of(10) {
                nanos /= 10;
                digits -= 1;
            }
            let mut div = 10u32.pow(digits - 1);
            while div > 0 {
                put(b'0' + u8::try_from(nanos / div % 10).unwrap_or(0));
                div /= 10;
            }
        }
        put(b'Z');
        n
    }

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; MAX];
        let n = format_into(*t, &mut buf);
        match std::str::from_utf8(&buf[..n]) {
            Ok(text) if n > 0 => s.serialize_str(text),
            _ => time::serde::rfc3339::serialize(t, s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        time::serde::rfc3339::deserialize(d)
    }
}

/// A SHA-256 value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The previous hash of a chain's first record.
    pub const ZERO: Self = Self([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Self(b.try_into().ok()?))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

/// The fields of a record that searches filter on, read from its sealed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// Unix time in microseconds.
    pub time_micros: i64,
    pub kind: Kind,
    pub action: String,
    pub tenant: Option<String>,
    pub key_id: Option<String>,
    pub decision: Option<Decision>,
}

impl Columns {
    pub fn of(record: &Record) -> Self {
        Self {
            time_micros: micros(record.time),
            kind: record.kind,
            action: record.action.clone(),
            tenant: record.tenant.clone(),
            key_id: record.key_id.clone(),
            decision: record.decision,
        }
    }
}

/// Unix time in microseconds (the unit of the time column).
pub fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// A sealed record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub chain: String,
    /// 1 for a chain's first record, then +1 each.
    pub seq: u64,
    pub prev_hash: Digest,
    pub hash: Digest,
    /// The record's time, Unix microseconds (stores index their ranges by it; the verifier
    /// checks it against the body).
    pub time_micros: i64,
    /// The record's body ([`Sealable::write_body`], or the JSON of an earlier log): the bytes
    /// the hash covers.
    pub body: Vec<u8>,
}

impl Entry {
    /// Seals `record` as entry `seq` of `chain` after `prev_hash`.
    pub fn seal(chain: &str, seq: u64, prev_hash: Digest, record: &dyn Sealable) -> Self {
        let body = record.to_body();
        Self {
            chain: chain.to_owned(),
            seq,
            prev_hash,
            hash: entry_hash(chain, seq, &prev_hash, &body),
            time_micros: micros(record.time()),
            body,
        }
    }

    /// The record in the body.
    pub fn record(&self) -> Result<Record, BodyError> {
        Record::from_body(&self.body)
    }

    /// The query columns of the record in the body.
    pub fn columns(&self) -> Result<Columns, BodyError> {
        Ok(Columns::of(&self.record()?))
    }

    /// The hash the entry's contents call for (equal to `hash` unless it was tampered with).
    pub fn expected_hash(&self) -> Digest {
        entry_hash(&self.chain, self.seq, &self.prev_hash, &self.body)
    }
}

/// SHA-256 over a domain tag, the chain, the sequence number, the previous hash and the body.
pub fn entry_hash(chain: &str, seq: u64, prev: &Digest, body: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(b"portcullis.audit.entry.v1\n");
    h.update(chain.as_bytes());
    h.update(b"\n");
    h.update(seq.to_be_bytes());
    h.update(prev.0);
    h.update(body);
    Digest(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record() -> Record {
        Record::new(
            datetime!(2026-01-02 03:04:05.123456 UTC),
            Kind::Request,
            "request",
        )
        .with("status", 200)
        .with("method", "GET")
        .with("bytes_in", 0)
    }

    #[test]
    fn body_is_binary_and_round_trips() {
        let mut r = record();
        r.tenant = Some("acme".to_owned());
        r.decision = Some(Decision::Allow);
        let body = r.to_body();
        assert_eq!(body[0], crate::body::BINARY);
        assert!(body.len() < serde_json::to_string(&r).unwrap().len() / 2);
        let back = Record::from_body(&body).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_body(), body);
        // The JSON of an earlier log reads back as the same record.
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(Record::from_body(&json).unwrap(), r);
    }

    #[test]
    fn hash_covers_every_part() {
        let r = record();
        let e = Entry::seal("acme", 1, Digest::ZERO, &r);
        assert_eq!(e.hash, e.expected_hash());
        assert_ne!(e.hash, entry_hash("acme2", 1, &Digest::ZERO, &e.body));
        assert_ne!(e.hash, entry_hash("acme", 2, &Digest::ZERO, &e.body));
        assert_ne!(e.hash, entry_hash("acme", 1, &Digest([1; 32]), &e.body));
        let edited = record().with("status", 201).to_body();
        assert_ne!(e.hash, entry_hash("acme", 1, &Digest::ZERO, &edited));
        assert_eq!(
            e.hash,
            entry_hash("acme", 1, &Digest::ZERO, &record().to_body())
        );
    }

    #[test]
    fn unknown_fields_in_a_body_are_refused() {
        assert!(
            serde_json::from_str::<Record>(
                r#"{"time":"2026-01-02T03:04:05Z","kind":"request","action":"x","extra":1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn times_are_written_as_the_general_formatter_writes_them() {
        use time::format_description::well_known::Rfc3339;
        let base = datetime!(2026-01-02 03:04:05 UTC);
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut times = vec![
            base,
            datetime!(0000-01-01 00:00:00 UTC),
            datetime!(9999-12-31 23:59:59.999999999 UTC),
            datetime!(2026-11-30 21:07:00.1 UTC),
            datetime!(2026-11-30 21:07:00.000001 UTC),
            datetime!(2026-11-30 23:07:00.5 +02:00),
        ];
        for _ in 0..2_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let secs = i64::try_from(seed >> 34).unwrap();
            let nanos = i64::try_from(seed % 1_000_000_000).unwrap();
            let micros_only = nanos / 1_000 * 1_000;
            let t = base + time::Duration::seconds(secs);
            times.push(t + time::Duration::nanoseconds(nanos));
            times.push(t + time::Duration::nanoseconds(micros_only));
        }
        for t in times {
            let mut buf = [0u8; 32];
            let n = rfc3339::format_into(t, &mut buf);
            let utc = t.to_offset(time::UtcOffset::UTC);
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                utc.format(&Rfc3339).unwrap(),
                "{t}"
            );
        }
    }

    #[test]
    fn a_record_and_its_body_shape_write_the_same_bytes() {
        let mut r = record();
        r.tenant = Some("acme".to_owned());
        r.reason = Some("rate_limited".to_owned());
        let mut out = Vec::new();
        Body {
            time: r.time,
            kind: r.kind,
            action: &r.action,
            tenant: Some("acme"),
            actor: None,
            key_id: None,
            request_id: None,
            decision: None,
            reason: Some("rate_limited"),
            data: &r.data,
        }
        .write(&mut out);
        assert_eq!(out, r.to_body());
        let e = Entry::seal("acme", 1, Digest::ZERO, &r);
        assert_eq!(e.time_micros, micros(r.time));
        assert_eq!(e.record().unwrap(), r);
        assert_eq!(e.columns().unwrap(), Columns::of(&r));
    }

    #[test]
    fn digest_hex_round_trips() {
        let d = Digest([7; 32]);
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }
}
