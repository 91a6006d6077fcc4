//! Audit records and sealed entries.
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

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
    #[serde(with = "time::serde::rfc3339")]
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

    /// The body: the record as compact JSON, fields in declaration order (absent ones left
    /// out), `data` keys in the order of serde_json's map. Not canonical, and need not be: the
    /// hash covers the exact stored bytes, which are never serialised again to be checked.
    pub fn to_body(&self) -> String {
        let mut out = Vec::with_capacity(384);
        // Writing to a Vec cannot fail, and a record has nothing serde_json refuses (string
        // keys only); the fallback is never taken.
        if serde_json::to_writer(&mut out, self).is_err() {
            out.clear();
        }
        // serde_json writes UTF-8 only.
        String::from_utf8(out).unwrap_or_default()
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

/// The fields of a record that a store keeps in columns of their own, for queries. The
/// verifier checks that they still equal the sealed body.
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
    pub columns: Columns,
    /// The record's JSON ([`Record::to_body`]): the bytes the hash covers.
    pub body: String,
}

impl Entry {
    /// Seals `record` as entry `seq` of `chain` after `prev_hash`.
    pub fn seal(chain: &str, seq: u64, prev_hash: Digest, record: &Record) -> Self {
        let body = record.to_body();
        Self {
            chain: chain.to_owned(),
            seq,
            prev_hash,
            hash: entry_hash(chain, seq, &prev_hash, &body),
            columns: Columns::of(record),
            body,
        }
    }

    /// The record in the body.
    pub fn record(&self) -> Result<Record, serde_json::Error> {
        serde_json::from_str(&self.body)
    }

    /// The hash the entry's contents call for (equal to `hash` unless it was tampered with).
    pub fn expected_hash(&self) -> Digest {
        entry_hash(&self.chain, self.seq, &self.prev_hash, &self.body)
    }
}

/// SHA-256 over a domain tag, the chain, the sequence number, the previous hash and the body.
pub fn entry_hash(chain: &str, seq: u64, prev: &Digest, body: &str) -> Digest {
    let mut h = Sha256::new();
    h.update(b"portcullis.audit.entry.v1\n");
    h.update(chain.as_bytes());
    h.update(b"\n");
    h.update(seq.to_be_bytes());
    h.update(prev.0);
    h.update(body.as_bytes());
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
    fn body_is_compact_json_in_field_order_and_round_trips() {
        let mut r = record();
        r.tenant = Some("acme".to_owned());
        r.decision = Some(Decision::Allow);
        let body = r.to_body();
        // `data` keys come in the order of serde_json's map (sorted, or insertion order with
        // its `preserve_order` feature): compare them as a value.
        let (head, data) = body.split_at(body.find(r#""data":"#).unwrap());
        assert_eq!(
            head,
            r#"{"time":"2026-01-02T03:04:05.123456Z","kind":"request","action":"request","tenant":"acme","decision":"allow","#
        );
        let data: Value = serde_json::from_str(&data[7..data.len() - 1]).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"status": 200, "method": "GET", "bytes_in": 0})
        );
        assert!(!body.contains(' '));
        let back: Record = serde_json::from_str(&body).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_body(), body);
    }

    #[test]
    fn hash_covers_every_part() {
        let r = record();
        let e = Entry::seal("acme", 1, Digest::ZERO, &r);
        assert_eq!(e.hash, e.expected_hash());
        assert_ne!(e.hash, entry_hash("acme2", 1, &Digest::ZERO, &e.body));
        assert_ne!(e.hash, entry_hash("acme", 2, &Digest::ZERO, &e.body));
        assert_ne!(e.hash, entry_hash("acme", 1, &Digest([1; 32]), &e.body));
        let edited = e.body.replace("200", "201");
        assert_ne!(e.hash, entry_hash("acme", 1, &Digest::ZERO, &edited));
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
    fn digest_hex_round_trips() {
        let d = Digest([7; 32]);
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }
}
