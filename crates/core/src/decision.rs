//! The access decision: a pure function of (key record, request facts, now).
use std::net::IpAddr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::{
    model::ApiKey,
    scope::{self, Scope},
    tenant::{Environment, TenantId, TenantStatus},
};

/// The outcome of verifying a key. The wire form is SCREAMING_SNAKE_CASE (`VALID`, `NOT_FOUND`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionCode {
    Valid,
    /// Unknown or malformed.
    NotFound,
    /// Past its expiry, or a rolled secret past its grace period.
    Expired,
    Revoked,
    TenantMismatch,
    TenantSuspended,
    EnvironmentMismatch,
    IpNotAllowed,
    InsufficientScope,
}

impl DecisionCode {
    pub const ALL: [DecisionCode; 9] = [
        Self::Valid,
        Self::NotFound,
        Self::Expired,
        Self::Revoked,
        Self::TenantMismatch,
        Self::TenantSuspended,
        Self::EnvironmentMismatch,
        Self::IpNotAllowed,
        Self::InsufficientScope,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::NotFound => "NOT_FOUND",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
            Self::TenantMismatch => "TENANT_MISMATCH",
            Self::TenantSuspended => "TENANT_SUSPENDED",
            Self::EnvironmentMismatch => "ENVIRONMENT_MISMATCH",
            Self::IpNotAllowed => "IP_NOT_ALLOWED",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
        }
    }

    pub fn is_valid(self) -> bool {
        self == Self::Valid
    }
}

/// What the store knows about the presented secret.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub key: &'a ApiKey,
    pub tenant_status: TenantStatus,
    /// Set when the presented secret was rolled away: it works until then.
    pub secret_expires_at: Option<OffsetDateTime>,
}

/// What the caller requires of the key.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requirements<'a> {
    pub tenant: Option<&'a TenantId>,
    pub environment: Option<Environment>,
    pub scopes: &'a [Scope],
    /// The client's address. When the key has an allowlist and no address is known, access is
    /// denied (fail closed).
    pub ip: Option<IpAddr>,
}

/// The decision. Checks run in a fixed order so that the first failing reason is reported; a key
/// of another tenant reports `TENANT_MISMATCH` before anything else about it is revealed.
pub fn decide(
    subject: Option<Subject<'_>>,
    req: &Requirements<'_>,
    now: OffsetDateTime,
) -> DecisionCode {
    let Some(s) = subject else {
        return DecisionCode::NotFound;
    };
    let key = s.key;
    if req.tenant.is_some_and(|t| *t != key.tenant_id) {
        return DecisionCode::TenantMismatch;
    }
    if key.revoked_at.is_some_and(|r| r <= now) {
        return DecisionCode::Revoked;
    }
    if key.expires_at.is_some_and(|e| e <= now) || s.secret_expires_at.is_some_and(|e| e <= now) {
        return DecisionCode::Expired;
    }
    if s.tenant_status != TenantStatus::Active {
        return DecisionCode::TenantSuspended;
    }
    if req.environment.is_some_and(|e| e != key.environment) {
        return DecisionCode::EnvironmentMismatch;
    }
    if !key.ip_allowlist.is_empty() && !req.ip.is_some_and(|ip| key.ip_allowlist.allows(ip)) {
        return DecisionCode::IpNotAllowed;
    }
    if !scope::missing(&key.scopes, req.scopes).is_empty() {
        return DecisionCode::InsufficientScope;
    }
    DecisionCode::Valid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::Clock, clock::ManualClock, ip::IpAllowlist};
    use serde_json::Map;
    use time::{Duration, macros::datetime};

    fn key() -> ApiKey {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        ApiKey {
            id: "key_01".into(),
            tenant_id: TenantId::parse("acme").expect("valid"),
            environment: Environment::Live,
            name: "k".into(),
            scopes: crate::scope::parse_scopes(&["invoices:*", "customers:read"]).expect("valid"),
            hint: "sk_live_…abcd".into(),
            ip_allowlist: IpAllowlist::default(),
            metadata: Map::new(),
            external_id: None,
            rate_limit: None,
            created_at: t0,
            updated_at: t0,
            expires_at: Some(t0 + Duration::days(30)),
            revoked_at: None,
            last_used_at: None,
        }
    }

    fn subj(k: &ApiKey) -> Subject<'_> {
        Subject {
            key: k,
            tenant_status: TenantStatus::Active,
            secret_expires_at: None,
        }
    }

    #[test]
    fn expiry_with_fixed_clock() {
        let clock = ManualClock::new(datetime!(2026-01-01 00:00 UTC));
        let k = key();
        let req = Requirements::default();
        assert_eq!(
            decide(Some(subj(&k)), &req, clock.now()),
            DecisionCode::Valid
        );
        clock.advance(Duration::days(30) - Duration::seconds(1));
        assert_eq!(
            decide(Some(subj(&k)), &req, clock.now()),
            DecisionCode::Valid
        );
        clock.advance(Duration::seconds(1));
        assert_eq!(
            decide(Some(subj(&k)), &req, clock.now()),
            DecisionCode::Expired
        );
    }

    #[test]
    fn grace_of_a_rolled_secret() {
        let clock = ManualClock::new(datetime!(2026-01-02 00:00 UTC));
        let k = key();
        let old = Subject {
            secret_expires_at: Some(clock.now() + Duration::hours(24)),
            ..subj(&k)
        };
        let req = Requirements::default();
        assert_eq!(decide(Some(old), &req, clock.now()), DecisionCode::Valid);
        clock.advance(Duration::hours(24) - Duration::seconds(1));
        assert_eq!(decide(Some(old), &req, clock.now()), DecisionCode::Valid);
        clock.advance(Duration::seconds(1));
        assert_eq!(decide(Some(old), &req, clock.now()), DecisionCode::Expired);
        // The new secret is unaffected.
        assert_eq!(
            decide(Some(subj(&k)), &req, clock.now()),
            DecisionCode::Valid
        );
    }

    #[test]
    fn every_reason() {
        let now = datetime!(2026-01-02 00:00 UTC);
        let mut k = key();
        let acme = TenantId::parse("acme").expect("valid");
        let other = TenantId::parse("globex").expect("valid");
        let need = crate::scope::parse_scopes(&["invoices:write"]).expect("valid");
        let need_more = crate::scope::parse_scopes(&["customers:write"]).expect("valid");
        let d = |k: &ApiKey, r: &Requirements<'_>| decide(Some(subj(k)), r, now);

        assert_eq!(
            decide(None, &Requirements::default(), now),
            DecisionCode::NotFound
        );
        let r = Requirements {
            tenant: Some(&other),
            ..Default::default()
        };
        assert_eq!(d(&k, &r), DecisionCode::TenantMismatch);
        let r = Requirements {
            tenant: Some(&acme),
            environment: Some(Environment::Test),
            ..Default::default()
        };
        assert_eq!(d(&k, &r), DecisionCode::EnvironmentMismatch);
        let r = Requirements {
            scopes: &need,
            environment: Some(Environment::Live),
            ..Default::default()
        };
        assert_eq!(d(&k, &r), DecisionCode::Valid);
        let r = Requirements {
            scopes: &need_more,
            ..Default::default()
        };
        assert_eq!(d(&k, &r), DecisionCode::InsufficientScope);

        k.ip_allowlist = IpAllowlist::parse(&["10.0.0.0/8"]).expect("valid");
        let inside = Requirements {
            ip: Some("10.1.1.1".parse().expect("ip")),
            ..Default::default()
        };
        let outside = Requirements {
            ip: Some("11.1.1.1".parse().expect("ip")),
            ..Default::default()
        };
        assert_eq!(d(&k, &inside), DecisionCode::Valid);
        assert_eq!(d(&k, &outside), DecisionCode::IpNotAllowed);
        assert_eq!(
            d(&k, &Requirements::default()),
            DecisionCode::IpNotAllowed,
            "unknown ip fails closed"
        );

        let suspended = Subject {
            tenant_status: TenantStatus::Suspended,
            ..subj(&k)
        };
        assert_eq!(
            decide(Some(suspended), &inside, now),
            DecisionCode::TenantSuspended
        );

        k.revoked_at = Some(now);
        assert_eq!(d(&k, &inside), DecisionCode::Revoked);
        // Tenant mismatch is reported before anything else about a foreign key.
        let r = Requirements {
            tenant: Some(&other),
            ..Default::default()
        };
        assert_eq!(d(&k, &r), DecisionCode::TenantMismatch);
    }

    #[test]
    fn test_and_live_never_cross() {
        let now = datetime!(2026-01-02 00:00 UTC);
        let mut k = key();
        for (key_env, want_env, ok) in [
            (Environment::Live, Environment::Live, true),
            (Environment::Live, Environment::Test, false),
            (Environment::Test, Environment::Live, false),
            (Environment::Test, Environment::Test, true),
        ] {
            k.environment = key_env;
            let r = Requirements {
                environment: Some(want_env),
                ..Default::default()
            };
            assert_eq!(decide(Some(subj(&k)), &r, now).is_valid(), ok);
        }
    }
}
