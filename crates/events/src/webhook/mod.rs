//! Webhooks: per-tenant endpoints that receive the tenant's events as signed HTTP POSTs.
//!
//! - [`signature`]: signing and verifying the `Portcullis-Signature` header (receivers use
//!   [`verify`] too).
//! - [`retry`]: the retry schedule (exponential backoff, full jitter, dead after 24 h).
//! - [`store`]: the [`WebhookStore`] contract (endpoints, deliveries, the fan-out cursor), kept
//!   apart from the event backend so any backend's events can be delivered from any store.
//!
//! The life of a delivery: the fan-out reads the events after its cursor and, in one
//! transaction, creates one `pending` delivery per event and enabled endpoint of the event's
//! tenant whose types include the event's (and that existed when it happened), and advances
//! the cursor. The sender claims due deliveries, POSTs the event, and marks each `delivered`
//! (2xx), schedules it again ([`RetrySchedule`]) or, past the window, `dead`. A dead delivery
//! is listed and can be redelivered by hand. Delivery is at least once: receivers deduplicate
//! by `Portcullis-Event-Id` (and order by it: deliveries may arrive out of order).
use portcullis_core::{SecretString, tenant::TenantId};
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use crate::model::{Event, TypeSet};

pub mod retry;
pub mod signature;
pub mod store;

pub use retry::RetrySchedule;
pub use signature::{DEFAULT_TOLERANCE, HEADER, VerifyError, sign, sign_with, verify};
pub use store::{
    Attempt, AttemptResult, EndpointChange, Next, SecretRewrite, WebhookError, WebhookStore,
};

/// Endpoint ids are `whk_` + a ULID, delivery ids `whd_` + a ULID.
pub const ENDPOINT_ID_KIND: &str = "whk";
pub const DELIVERY_ID_KIND: &str = "whd";
/// Endpoint secrets start with this.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new endpoint secret: `whsec_` and 32 random bytes in hex (64 characters).
///
/// # Panics
/// If the operating system's random source fails, which leaves no safe way to continue.
pub fn generate_secret() -> SecretString {
    use rand::TryRngCore;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(bytes.as_mut())
        .expect("operating system random source failed");
    SecretString::from(format!("{SECRET_PREFIX}{}", hex::encode(bytes.as_ref())))
}

fn type_names<S: Serializer>(types: &TypeSet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(types.iter().map(|t| t.as_str()))
}

/// A webhook endpoint, as the API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub id: String,
    pub tenant: TenantId,
    pub url: String,
    pub description: Option<String>,
    /// The event types it receives.
    #[serde(serialize_with = "type_names")]
    pub types: TypeSet,
    /// A disabled endpoint gets no new deliveries and its pending ones wait.
    pub enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Until then the secret before the last roll still signs (a second `v1`).
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
}

impl Endpoint {
    /// Whether `e` goes to this endpoint: the endpoint's tenant, one of its types, not raised
    /// before the endpoint existed (whole seconds: stored times are). Enabled-ness is the
    /// caller's business.
    pub fn wants(&self, e: &Event) -> bool {
        e.tenant.as_ref() == Some(&self.tenant)
            && self.types.contains(e.kind)
            && e.time.unix_timestamp() >= self.created_at.unix_timestamp()
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; tried at `next_attempt_at`.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Given up after the retry window; redeliverable by hand.
    Dead,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// A delivery of one event to one endpoint, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_id: u64,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Attempts made (and finished) so far.
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The HTTP status of the last attempt (none: no answer).
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed, in a few words (`timeout`, `connect`, `status 500`, …).
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventType, NewEvent};

    #[test]
    fn secrets_are_prefixed_random_and_redacted() {
        use portcullis_core::ExposeSecret;
        let (a, b) = (generate_secret(), generate_secret());
        assert!(a.expose_secret().starts_with(SECRET_PREFIX));
        assert_eq!(a.expose_secret().len(), SECRET_PREFIX.len() + 64);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(!format!("{a:?}").contains(a.expose_secret()));
    }

    #[test]
    fn endpoints_want_their_tenants_types_from_their_creation() {
        let acme = TenantId::parse("acme").unwrap();
        let created = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let ep = Endpoint {
            id: "whk_x".into(),
            tenant: acme.clone(),
            url: "https://example.com/hook".into(),
            description: None,
            types: TypeSet::parse_list("key.created,key.revoked").unwrap(),
            enabled: true,
            created_at: created,
            updated_at: created,
            previous_secret_expires_at: None,
        };
        let ev = |kind, tenant: Option<&str>, at: OffsetDateTime| {
            NewEvent::new(
                kind,
                tenant.map(|t| TenantId::parse(t).unwrap()),
                at,
                serde_json::json!({}),
            )
            .into_event(1)
        };
        let later = created + time::Duration::seconds(5);
        assert!(ep.wants(&ev(EventType::KeyCreated, Some("acme"), later)));
        assert!(ep.wants(&ev(EventType::KeyCreated, Some("acme"), created)));
        assert!(!ep.wants(&ev(EventType::KeyRolled, Some("acme"), later)));
        assert!(!ep.wants(&ev(EventType::KeyCreated, Some("other"), later)));
        assert!(!ep.wants(&ev(EventType::AuditDegraded, None, later)));
        let before = created - time::Duration::seconds(1);
        assert!(!ep.wants(&ev(EventType::KeyCreated, Some("acme"), before)));
        let json = serde_json::to_value(&ep).unwrap();
        assert_eq!(
            json["types"],
            serde_json::json!(["key.created", "key.revoked"])
        );
        assert!(json.get("secret").is_none());
    }
}
