//! A tenant's ceilings: bounds that only a root admin sets on what the tenant's keys may be
//! given, so that an admin key bound to the tenant (with `keys:write`) cannot raise its own
//! tenant's powers.
//!
//! - `allowed_scopes`: every scope of a key must be within one of these patterns
//!   ([`Scope::is_within`]: a `*` segment only within a `*` segment).
//! - `max_key_rate_limit`: a key's own rate limit must allow no more ([`RateLimit::is_within`]:
//!   sustained rate and burst). A key created without a limit of its own gets the ceiling.
//!
//! Every key that is created, updated or rolled must be within its tenant's ceilings at that
//! moment; the operations (HTTP API and CLI alike) check it. Lowering a ceiling does not change
//! keys that exist: they keep working, and the next update must bring them within (the same
//! update may).
use crate::{
    error::ValidationError,
    model::{ApiKey, Tenant},
    ratelimit::RateLimit,
    scope::{self, Scope},
};

/// Checks a key (as it would be stored) against its tenant's ceilings.
pub fn check_key(tenant: &Tenant, key: &ApiKey) -> Result<(), ValidationError> {
    if let Some(allowed) = &tenant.allowed_scopes
        && let Some(index) = scope::first_outside(&key.scopes, allowed)
    {
        return Err(ValidationError::ScopeNotAllowed { index });
    }
    match (&tenant.max_key_rate_limit, &key.rate_limit) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(ValidationError::RateLimitAboveCeiling(
            "the tenant has a max_key_rate_limit: the key needs a limit of its own within it",
        )),
        (Some(max), Some(own)) if !own.is_within(max) => {
            Err(ValidationError::RateLimitAboveCeiling(
                "allows more than the tenant's max_key_rate_limit (in requests per second or in burst)",
            ))
        }
        (Some(_), Some(_)) => Ok(()),
    }
}

/// The limit of a new key: the one requested, or else the tenant's ceiling (if it has one).
pub fn key_rate_limit(tenant: &Tenant, requested: Option<RateLimit>) -> Option<RateLimit> {
    requested.or(tenant.max_key_rate_limit)
}

/// Validates a tenant's `allowed_scopes` as received: each a well-formed scope pattern, at
/// most [`crate::limits::MAX_SCOPES`]; sorted and de-duplicated.
pub fn validate_allowed_scopes<S: AsRef<str>>(
    input: Option<&[S]>,
) -> Result<Option<Vec<Scope>>, ValidationError> {
    input.map(scope::parse_scopes).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{CreateKey, CreateTenant, KeyPolicy, UpdateKey, UpdateTenant};
    use time::macros::datetime;

    fn tenant(ceilings: &str) -> Tenant {
        let json = format!(r#"{{"id":"acme","name":"Acme"{ceilings}}}"#);
        serde_json::from_str::<CreateTenant>(&json)
            .expect("json")
            .validate(datetime!(2026-01-01 00:00 UTC))
            .expect("valid")
    }

    fn create(t: &Tenant, json: &str) -> Result<ApiKey, ValidationError> {
        serde_json::from_str::<CreateKey>(json)
            .expect("json")
            .create(t, &KeyPolicy::default(), datetime!(2026-01-02 00:00 UTC))
            .map(|n| n.key)
    }

    fn code<T>(r: Result<T, ValidationError>) -> Option<&'static str> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn no_ceilings_allow_anything() {
        let t = tenant("");
        let k = create(
            &t,
            r#"{"name":"k","environment":"live","scopes":["*:*"],
                "rate_limit":{"requests":1000000,"per_seconds":1}}"#,
        );
        assert!(k.is_ok());
        assert_eq!(
            k.ok().and_then(|k| k.rate_limit),
            RateLimit::new(1_000_000, 1, None).ok()
        );
    }

    #[test]
    fn scopes_must_be_within_allowed_scopes() {
        let t = tenant(r#","allowed_scopes":["invoices:*","files:read"]"#);
        let key = |scopes: &str| {
            create(
                &t,
                &format!(r#"{{"name":"k","environment":"live","scopes":{scopes}}}"#),
            )
        };
        assert!(key(r#"["invoices:read","invoices:*","files:read"]"#).is_ok());
        assert!(key("[]").is_ok());
        for bad in [
            r#"["*:*"]"#,
            r#"["*:read"]"#,
            r#"["files:*"]"#,
            r#"["files:read","admin:all"]"#,
        ] {
            let e = key(bad).expect_err(bad);
            assert_eq!(e.code(), "scope_not_allowed", "{bad}");
            assert!(e.is_forbidden());
        }
        // An empty ceiling allows keys without scopes only.
        let none = tenant(r#","allowed_scopes":[]"#);
        assert!(create(&none, r#"{"name":"k","environment":"live"}"#).is_ok());
        assert_eq!(
            code(create(
                &none,
                r#"{"name":"k","environment":"live","scopes":["a:b"]}"#
            )),
            Some("scope_not_allowed")
        );
    }

    #[test]
    fn own_limit_must_be_within_max_key_rate_limit() {
        let t = tenant(r#","max_key_rate_limit":{"requests":100,"per_seconds":1,"burst":20}"#);
        let key = |limit: &str| {
            create(
                &t,
                &format!(r#"{{"name":"k","environment":"live","rate_limit":{limit}}}"#),
            )
        };
        assert!(key(r#"{"requests":100,"per_seconds":1,"burst":20}"#).is_ok());
        assert!(key(r#"{"requests":6000,"per_seconds":60,"burst":1}"#).is_ok());
        for bad in [
            r#"{"requests":1000000,"per_seconds":1}"#,
            r#"{"requests":101,"per_seconds":1,"burst":1}"#,
            r#"{"requests":10,"per_seconds":1,"burst":21}"#,
            r#"{"requests":6001,"per_seconds":60,"burst":1}"#,
        ] {
            assert_eq!(code(key(bad)), Some("rate_limit_above_ceiling"), "{bad}");
        }
        // Malformed input is still a 400 (checked before the ceiling).
        assert_eq!(
            code(key(r#"{"requests":0,"per_seconds":1}"#)),
            Some("invalid_rate_limit")
        );
        // Without a limit of its own, a key gets the ceiling.
        let k = create(&t, r#"{"name":"k","environment":"live"}"#).expect("valid");
        assert_eq!(k.rate_limit, t.max_key_rate_limit);
    }

    #[test]
    fn updates_keep_keys_within() {
        let now = datetime!(2026-01-03 00:00 UTC);
        let mut t = tenant("");
        let mut k = create(
            &t,
            r#"{"name":"k","environment":"live","scopes":["*:*"],
                "rate_limit":{"requests":1000,"per_seconds":1}}"#,
        )
        .expect("valid");
        // The root admin lowers the ceilings afterwards.
        serde_json::from_str::<UpdateTenant>(
            r#"{"allowed_scopes":["app:*"],"max_key_rate_limit":{"requests":10,"per_seconds":1}}"#,
        )
        .expect("json")
        .apply(&mut t, now)
        .expect("valid");
        let patch = |json: &str| serde_json::from_str::<UpdateKey>(json).expect("json");
        let p = KeyPolicy::default();
        let mut copy = k.clone();
        assert_eq!(
            code(patch(r#"{"name":"renamed"}"#).apply(&mut copy, &t, &p, now)),
            Some("scope_not_allowed"),
            "an update leaves no key above the ceilings"
        );
        let mut copy = k.clone();
        assert_eq!(
            code(patch(r#"{"scopes":["app:read"]}"#).apply(&mut copy, &t, &p, now)),
            Some("rate_limit_above_ceiling")
        );
        patch(r#"{"scopes":["app:read"],"rate_limit":{"requests":5,"per_seconds":1}}"#)
            .apply(&mut k, &t, &p, now)
            .expect("brought within in one update");
        assert_eq!(
            code(patch(r#"{"rate_limit":null}"#).apply(&mut k.clone(), &t, &p, now)),
            Some("rate_limit_above_ceiling"),
            "the own limit cannot be removed under a ceiling"
        );
        assert_eq!(
            code(patch(r#"{"scopes":["app:*","x:y"]}"#).apply(&mut k.clone(), &t, &p, now)),
            Some("scope_not_allowed")
        );
        assert_eq!(check_key(&t, &k), Ok(()));
    }

    fn small_scope() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let seg = prop_oneof![Just("*"), Just("a"), Just("b")];
        (seg.clone(), seg).prop_map(|(r, a)| format!("{r}:{a}"))
    }

    fn small_limit() -> impl proptest::strategy::Strategy<Value = RateLimit> {
        use proptest::prelude::*;
        (1u32..50, 1u32..5, 1u32..50).prop_map(|(r, p, b)| RateLimit {
            requests: r,
            per_seconds: p,
            burst: b,
        })
    }

    proptest::proptest! {
        /// Whatever is asked for, a key that is created is within its tenant's ceilings, and a
        /// key within them is never refused by them.
        #[test]
        fn created_keys_are_within_the_ceilings(
            allowed in proptest::option::of(proptest::collection::vec(small_scope(), 0..3)),
            max in proptest::option::of(small_limit()),
            scopes in proptest::collection::vec(small_scope(), 0..3),
            own in proptest::option::of(small_limit()),
        ) {
            let mut t = tenant("");
            t.allowed_scopes = allowed.as_deref().map(|a| scope::parse_scopes(a).expect("valid"));
            t.max_key_rate_limit = max;
            let input = CreateKey {
                name: "k".into(),
                environment: crate::tenant::Environment::Live,
                scopes: scopes.clone(),
                expires_at: None,
                ip_allowlist: vec![],
                metadata: None,
                external_id: None,
                rate_limit: own.map(Into::into),
            };
            let parsed = scope::parse_scopes(&scopes).expect("valid");
            let scopes_ok = t
                .allowed_scopes
                .as_ref()
                .is_none_or(|a| parsed.iter().all(|s| a.iter().any(|p| p.covers(s))));
            let limit_ok = match (max, own) {
                (None, _) | (Some(_), None) => true,
                (Some(m), Some(o)) => o.is_within(&m),
            };
            match input.create(&t, &KeyPolicy::default(), datetime!(2026-01-02 00:00 UTC)) {
                Ok(new) => {
                    proptest::prop_assert!(scopes_ok && limit_ok);
                    proptest::prop_assert_eq!(check_key(&t, &new.key), Ok(()));
                    if let Some(m) = max {
                        proptest::prop_assert!(new.key.rate_limit.is_some_and(|l| l.is_within(&m)));
                    }
                }
                Err(e) => {
                    proptest::prop_assert!(e.is_forbidden(), "{e:?}");
                    proptest::prop_assert!(!(scopes_ok && limit_ok), "{e:?}");
                }
            }
        }
    }

    #[test]
    fn tenant_ceilings_are_validated_set_and_removed() {
        let now = datetime!(2026-01-03 00:00 UTC);
        let mut t = tenant(r#","allowed_scopes":["b:*","a:read","b:*"]"#);
        let scopes: Vec<&str> = t
            .allowed_scopes
            .iter()
            .flatten()
            .map(Scope::as_str)
            .collect();
        assert_eq!(scopes, ["a:read", "b:*"], "sorted and de-duplicated");
        let patch = |json: &str| serde_json::from_str::<UpdateTenant>(json).expect("json");
        assert_eq!(
            code(patch(r#"{"allowed_scopes":["nope"]}"#).apply(&mut t, now)),
            Some("invalid_scope")
        );
        assert_eq!(
            code(
                patch(r#"{"max_key_rate_limit":{"requests":0,"per_seconds":1}}"#)
                    .apply(&mut t, now)
            ),
            Some("invalid_rate_limit")
        );
        assert!(!patch(r#"{"name":"n"}"#).needs_root());
        assert!(patch(r#"{"allowed_scopes":null}"#).needs_root());
        assert!(patch(r#"{"max_key_rate_limit":null}"#).needs_root());
        patch(r#"{"allowed_scopes":null,"max_key_rate_limit":{"requests":1,"per_seconds":1}}"#)
            .apply(&mut t, now)
            .expect("valid");
        assert_eq!(t.allowed_scopes, None);
        assert_eq!(t.max_key_rate_limit, RateLimit::new(1, 1, None).ok());
        let json = serde_json::to_value(&t).expect("json");
        assert_eq!(json["allowed_scopes"], serde_json::Value::Null);
        assert_eq!(json["max_key_rate_limit"]["requests"], 1);
    }
}
