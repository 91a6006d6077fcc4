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

/// The decision. Checks run in a fixed order so that the first failing reason is reported. A
/// revoked or expired key is reported as such before any tenant, environment or other check: a
/// dead credential is an authentication failure (401, counted by the brute-force throttle),
/// never a 403 that would tell the caller the key still exists. (A caller that may not learn
/// about another tenant's keys, such as a tenant-bound admin key verifying, hides the answer
/// for a foreign key itself.)
pub fn decide(
    subject: Option<Subject<'_>>,
    req: &Requirements<'_>,
    now: OffsetDateTime,
) -> DecisionCode {
    let Some(s) = subject else {
        return DecisionCode::NotFound;
    };
    let key = s.key;
    if key.revoked_at.is_some_and(|r| r <= now) {
        return DecisionCode::Revoked;
    }
    if key.expires_at.is_some_and(|e| e <= now) || s.secret_expires_at.is_some_and(|e| e <= now) {
        return DecisionCode::Expired;
    }
    if req.tenant.is_some_and(|t| *t != key.tenant_id) {
        return DecisionCode::TenantMismatch;
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
    use proptest::prelude::*;
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
        // Revocation is reported before the tenant check.
        let r = Requirements {
            tenant: Some(&other),
            ..Default::default()
        };
        assert_eq!(d(&k, &r), DecisionCode::Revoked);
        k.revoked_at = None;
        assert_eq!(d(&k, &r), DecisionCode::TenantMismatch);
    }

    fn requirements() -> impl Strategy<
        Value = (
            Option<TenantId>,
            Option<Environment>,
            Vec<Scope>,
            Option<IpAddr>,
        ),
    > {
        let tenant = proptest::option::of(prop_oneof![Just("acme"), Just("globex")])
            .prop_map(|t| t.map(|t| TenantId::parse(t).expect("valid")));
        let env = proptest::option::of(prop_oneof![
            Just(Environment::Live),
            Just(Environment::Test)
        ]);
        let scopes = proptest::sample::subsequence(
            vec!["invoices:read", "customers:write", "admin:all", "x:y"],
            0..=4,
        )
        .prop_map(|s| crate::scope::parse_scopes(&s).expect("valid"));
        let ip = proptest::option::of(any::<[u8; 4]>().prop_map(IpAddr::from));
        (tenant, env, scopes, ip)
    }

    proptest! {
        /// Whatever the request asks (tenant, environment, scopes, address) and whatever else is
        /// wrong with the key (suspended tenant, allowlist), a revoked or expired key is reported
        /// as revoked or expired.
        #[test]
        fn dead_keys_are_reported_before_any_other_check(
            (tenant, env, scopes, ip) in requirements(),
            revoked in any::<bool>(),
            rolled_away in any::<bool>(),
            suspended in any::<bool>(),
            allowlist in any::<bool>(),
            key_env in prop_oneof![Just(Environment::Live), Just(Environment::Test)],
        ) {
            let now = datetime!(2026-03-01 00:00 UTC);
            let mut k = key();
            k.environment = key_env;
            if allowlist {
                k.ip_allowlist = IpAllowlist::parse(&["192.0.2.0/24"]).expect("valid");
            }
            if revoked {
                k.revoked_at = Some(now - Duration::seconds(1));
            }
            let subject = Subject {
                key: &k,
                tenant_status: if suspended { TenantStatus::Suspended } else { TenantStatus::Active },
                secret_expires_at: rolled_away.then_some(now),
            };
            let req = Requirements { tenant: tenant.as_ref(), environment: env, scopes: &scopes, ip };
            let code = decide(Some(subject), &req, now);
            // The key itself expired on 2026-01-31: every case here is dead.
            let want = if revoked { DecisionCode::Revoked } else { DecisionCode::Expired };
            prop_assert_eq!(code, want);
        }
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
