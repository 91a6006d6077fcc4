//! The event model.
//!
//! An event has an `id` (a positive integer, monotonic per deployment and durable: the embedded
//! backend's row id, JetStream's stream sequence), a tenant (none for events about the
//! deployment itself, e.g. `audit.degraded`, which only global readers see), a type, a time and
//! data that never holds a secret. A [`NewEvent`] also carries a message id: publishing the same
//! message id twice stores the event once (JetStream's `Nats-Msg-Id`, a unique index in SQLite),
//! so a retried publish or an event raised by two nodes at once is not doubled.
use portcullis_core::tenant::TenantId;
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

/// The kinds of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventType {
    KeyCreated,
    KeyUpdated,
    KeyRolled,
    KeyRevoked,
    KeyExpiring,
    KeyExpired,
    AuthFailureBurst,
    RatelimitExceeded,
    AnomalyRateSpike,
    AnomalyNewIp,
    AnomalyRevokedKeyUsed,
    AuditDegraded,
}

impl EventType {
    /// Every type, in a stable order (the bit of a type in a [`TypeSet`] is its index here).
    pub const ALL: [EventType; 12] = [
        EventType::KeyCreated,
        EventType::KeyUpdated,
        EventType::KeyRolled,
        EventType::KeyRevoked,
        EventType::KeyExpiring,
        EventType::KeyExpired,
        EventType::AuthFailureBurst,
        EventType::RatelimitExceeded,
        EventType::AnomalyRateSpike,
        EventType::AnomalyNewIp,
        EventType::AnomalyRevokedKeyUsed,
        EventType::AuditDegraded,
    ];

    /// The type's name on the wire (SSE `event:`, JSON `type`, NATS subject token).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::KeyCreated => "key.created",
            EventType::KeyUpdated => "key.updated",
            EventType::KeyRolled => "key.rolled",
            EventType::KeyRevoked => "key.revoked",
            EventType::KeyExpiring => "key.expiring",
            EventType::KeyExpired => "key.expired",
            EventType::AuthFailureBurst => "auth.failure_burst",
            EventType::RatelimitExceeded => "ratelimit.exceeded",
            EventType::AnomalyRateSpike => "anomaly.rate_spike",
            EventType::AnomalyNewIp => "anomaly.new_ip",
            EventType::AnomalyRevokedKeyUsed => "anomaly.revoked_key_used",
            EventType::AuditDegraded => "audit.degraded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    fn bit(self) -> u16 {
        let index = Self::ALL.iter().position(|t| *t == self).unwrap_or(0);
        1 << index
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A set of event types (a reader's `?types=` filter, a webhook endpoint's types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeSet(u16);

/// A `types` list named an unknown type (its position in the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type at position {0}")]
pub struct UnknownType(pub usize);

impl TypeSet {
    /// At most this many names in a list (there are fewer types; repeats are allowed up to it).
    pub const MAX_NAMES: usize = 32;

    pub const fn all() -> Self {
        Self((1 << EventType::ALL.len()) - 1)
    }

    pub const fn none() -> Self {
        Self(0)
    }

    pub fn contains(self, t: EventType) -> bool {
        self.0 & t.bit() != 0
    }

    pub fn insert(&mut self, t: EventType) {
        self.0 |= t.bit();
    }

    pub fn is_all(self) -> bool {
        self == Self::all()
    }

    /// The types, in [`EventType::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = EventType> {
        EventType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }

    /// Parses names; an empty list is refused (a filter that matches nothing is a mistake).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, UnknownType> {
        if names.is_empty() || names.len() > Self::MAX_NAMES {
            return Err(UnknownType(0));
        }
        let mut set = Self::none();
        for (i, n) in names.iter().enumerate() {
            set.insert(EventType::parse(n.as_ref().trim()).ok_or(UnknownType(i))?);
        }
        Ok(set)
    }

    /// Parses a comma-separated list (`?types=key.created,key.revoked`).
    pub fn parse_list(s: &str) -> Result<Self, UnknownType> {
        let names: Vec<&str> = s.split(',').collect();
        Self::from_names(&names)
    }
}

impl Default for TypeSet {
    fn default() -> Self {
        Self::all()
    }
}

/// What a reader may see: one tenant's events or (global readers) every tenant's and the
/// deployment's own, of some types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `None`: every tenant and the events of no tenant.
    pub tenant: Option<TenantId>,
    pub types: TypeSet,
}

impl Scope {
    pub fn tenant(tenant: TenantId) -> Self {
        Self {
            tenant: Some(tenant),
            types: TypeSet::all(),
        }
    }

    pub fn global() -> Self {
        Self {
            tenant: None,
            types: TypeSet::all(),
        }
    }

    pub fn with_types(mut self, types: TypeSet) -> Self {
        self.types = types;
        self
    }

    /// Whether a reader with this scope sees `e`.
    pub fn matches(&self, e: &Event) -> bool {
        self.types.contains(e.kind)
            && match &self.tenant {
                None => true,
                Some(t) => e.tenant.as_ref() == Some(t),
            }
    }
}

/// The subject token of events of no tenant (not a valid tenant id, so never a tenant's).
pub const SYSTEM_TENANT: &str = "_system";

/// `t` without its sub-microsecond part: event times are kept to the microsecond.
pub fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

/// An event as stored and delivered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub tenant: Option<TenantId>,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub data: serde_json::Value,
}

impl Event {
    /// The event as JSON (the SSE `data:` line and the webhook body).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The tenant's token in subjects and storage: the tenant id or [`SYSTEM_TENANT`].
    pub fn tenant_token(&self) -> &str {
        self.tenant.as_ref().map_or(SYSTEM_TENANT, TenantId::as_str)
    }
}

/// An event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Publishing the same message id again stores nothing new.
    pub msg_id: String,
    pub kind: EventType,
    pub tenant: Option<TenantId>,
    pub time: OffsetDateTime,
    pub data: serde_json::Value,
}

impl NewEvent {
    /// An event with a fresh unique message id (`msg_` + a ULID).
    pub fn new(
        kind: EventType,
        tenant: Option<TenantId>,
        time: OffsetDateTime,
        data: serde_json::Value,
    ) -> Self {
        Self {
            msg_id: format!("msg_{}", ulid::Ulid::new()),
            kind,
            tenant,
            time,
            data,
        }
    }

    /// An event raised at most once for `key` (e.g. `key.expiring` for one key and expiry):
    /// its message id is derived from the type and `key`, so a second publish is a duplicate.
    pub fn once(
        kind: EventType,
        tenant: Option<TenantId>,
        time: OffsetDateTime,
        key: &str,
        data: serde_json::Value,
    ) -> Self {
        Self {
            msg_id: format!("{}:{key}", kind.as_str()),
            kind,
            tenant,
            time,
            data,
        }
    }

    /// The stored event once the backend gave it `id` (its time kept to the microsecond, as
    /// every backend stores it).
    pub fn into_event(self, id: u64) -> Event {
        Event {
            id,
            kind: self.kind,
            tenant: self.tenant,
            time: to_micros(self.time),
            data: self.data,
        }
    }

    /// The tenant's token in subjects and storage: the tenant id or [`SYSTEM_TENANT`].
    pub fn tenant_token(&self) -> &str {
        self.tenant.as_ref().map_or(SYSTEM_TENANT, TenantId::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_filter() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        let set = TypeSet::parse_list("key.created,key.revoked").unwrap();
        assert!(set.contains(EventType::KeyCreated));
        assert!(set.contains(EventType::KeyRevoked));
        assert!(!set.contains(EventType::KeyRolled));
        assert_eq!(set.iter().count(), 2);
        assert_eq!(TypeSet::parse_list("key.created,nope"), Err(UnknownType(1)));
        assert!(TypeSet::parse_list("").is_err());
        assert!(TypeSet::all().is_all());
    }

    #[test]
    fn scopes_keep_tenants_apart() {
        let acme = TenantId::parse("acme").unwrap();
        let other = TenantId::parse("other").unwrap();
        let e = NewEvent::new(
            EventType::KeyCreated,
            Some(acme.clone()),
            OffsetDateTime::UNIX_EPOCH,
            serde_json::json!({}),
        )
        .into_event(1);
        assert!(Scope::tenant(acme).matches(&e));
        assert!(!Scope::tenant(other).matches(&e));
        assert!(Scope::global().matches(&e));
        let system = NewEvent::new(
            EventType::AuditDegraded,
            None,
            OffsetDateTime::UNIX_EPOCH,
            serde_json::json!({}),
        )
        .into_event(2);
        assert!(!Scope::tenant(TenantId::parse("acme").unwrap()).matches(&system));
        assert!(Scope::global().matches(&system));
        assert_eq!(system.tenant_token(), SYSTEM_TENANT);
        let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(json["type"], "key.created");
        assert_eq!(json["id"], 1);
        assert_eq!(json["tenant"], "acme");
    }
}
