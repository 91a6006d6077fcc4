//! Tests of `request.rs`.
use super::*;
use time::macros::datetime;

fn tenant(max: Option<i64>) -> Tenant {
    CreateTenant {
        id: "acme".into(),
        name: "Acme".into(),
        key_prefix: Some("acme".into()),
        max_key_lifetime_seconds: max,
        rate_limit: None,
        allowed_scopes: None,
        max_key_rate_limit: None,
    }
    .validate(datetime!(2026-01-01 00:00 UTC))
    .expect("valid")
}

fn create(json: &str) -> Result<CreateKey, serde_json::Error> {
    serde_json::from_str(json)
}

#[test]
fn create_key_defaults_to_no_scopes_and_tenant_prefix() {
    let now = datetime!(2026-01-02 00:00 UTC);
    let k = create(r#"{"name":"ci","environment":"test"}"#)
        .expect("json")
        .create(&tenant(None), &KeyPolicy::default(), now)
        .expect("valid");
    assert!(k.key.scopes.is_empty());
    assert!(k.secret.expose_secret().starts_with("acme_test_"));
    assert_eq!(k.key.expires_at, None);
    assert!(k.key.hint.starts_with("acme_test_…"));
}

#[test]
fn unknown_fields_rejected() {
    assert!(create(r#"{"name":"x","environment":"live","admin":true}"#).is_err());
    assert!(create(r#"{"name":"x","environment":"prod"}"#).is_err());
}

#[test]
fn expiry_rules() {
    let now = datetime!(2026-01-02 00:00 UTC);
    let t = tenant(Some(90 * 86_400));
    let p = KeyPolicy::default();
    let past = create(r#"{"name":"x","environment":"live","expires_at":"2025-01-01T00:00:00Z"}"#)
        .expect("json");
    assert_eq!(
        past.create(&t, &p, now).err().map(|e| e.code()),
        Some("invalid_expiry")
    );
    let far = create(r#"{"name":"x","environment":"live","expires_at":"2027-01-01T00:00:00Z"}"#)
        .expect("json");
    assert_eq!(
        far.create(&t, &p, now).err().map(|e| e.code()),
        Some("invalid_expiry")
    );
    let dflt = create(r#"{"name":"x","environment":"live"}"#).expect("json");
    let k = dflt.create(&t, &p, now).expect("valid");
    assert_eq!(k.key.expires_at, Some(now + Duration::days(90)));
    // The config can be stricter than the tenant.
    let strict = KeyPolicy {
        max_live_lifetime_seconds: Some(86_400),
        ..Default::default()
    };
    assert_eq!(strict.max_lifetime(&t, Environment::Live), Some(86_400));
    assert_eq!(
        strict.max_lifetime(&t, Environment::Test),
        Some(90 * 86_400)
    );
    // Removing an expiry under a maximum lifetime is refused.
    let mut key = k.key;
    let patch: UpdateKey = serde_json::from_str(r#"{"expires_at":null}"#).expect("json");
    assert!(patch.apply(&mut key, &t, &p, now).is_err());
}

#[test]
fn grace_bounds() {
    let now = datetime!(2026-01-02 00:00 UTC);
    let r = |g: i64| {
        RollKey {
            grace_seconds: Some(g),
        }
        .old_secret_expiry(now)
    };
    assert_eq!(r(0), Ok(now));
    assert_eq!(r(limits::MAX_GRACE_SECONDS), Ok(now + Duration::days(7)));
    assert!(r(-1).is_err());
    assert!(r(limits::MAX_GRACE_SECONDS + 1).is_err());
    assert_eq!(
        RollKey::default().old_secret_expiry(now),
        Ok(now + Duration::days(1))
    );
}

#[test]
fn patch_distinguishes_null_from_absent() {
    let p: UpdateKey = serde_json::from_str(r#"{"external_id":null}"#).expect("json");
    assert_eq!(p.external_id, Some(None));
    let p: UpdateKey = serde_json::from_str(r#"{}"#).expect("json");
    assert_eq!(p.external_id, None);
}

#[test]
fn rate_limit_is_created_patched_and_removed() {
    use crate::ratelimit::RateLimit;
    let now = datetime!(2026-01-02 00:00 UTC);
    let (t, p) = (tenant(None), KeyPolicy::default());
    let limit = |r, s, b| RateLimit {
        requests: r,
        per_seconds: s,
        burst: b,
    };
    let mut key = create(
        r#"{"name":"x","environment":"live","rate_limit":{"requests":100,"per_seconds":60}}"#,
    )
    .expect("json")
    .create(&t, &p, now)
    .expect("valid")
    .key;
    assert_eq!(key.rate_limit, Some(limit(100, 60, 100)), "burst defaults");
    let patch = |json: &str| serde_json::from_str::<UpdateKey>(json).expect("json");
    patch(r#"{"name":"renamed"}"#)
        .apply(&mut key, &t, &p, now)
        .expect("valid");
    assert_eq!(
        key.rate_limit,
        Some(limit(100, 60, 100)),
        "absent: unchanged"
    );
    patch(r#"{"rate_limit":{"requests":5,"per_seconds":1,"burst":10}}"#)
        .apply(&mut key, &t, &p, now)
        .expect("valid");
    assert_eq!(key.rate_limit, Some(limit(5, 1, 10)));
    let bad = patch(r#"{"name":"n2","rate_limit":{"requests":5,"per_seconds":0}}"#)
        .apply(&mut key, &t, &p, now);
    assert_eq!(bad.err().map(|e| e.code()), Some("invalid_rate_limit"));
    patch(r#"{"rate_limit":null}"#)
        .apply(&mut key, &t, &p, now)
        .expect("valid");
    assert_eq!(key.rate_limit, None, "null removes it");
    let bad = create(r#"{"name":"x","environment":"live","rate_limit":{"rps":1}}"#)
        .expect("json")
        .create(&t, &p, now);
    assert_eq!(bad.err().map(|e| e.code()), Some("invalid_rate_limit"));

    let mut t = t;
    let tpatch = |json: &str| serde_json::from_str::<UpdateTenant>(json).expect("json");
    tpatch(r#"{"rate_limit":{"requests":1000,"per_seconds":60,"burst":50}}"#)
        .apply(&mut t, now)
        .expect("valid");
    assert_eq!(t.rate_limit, Some(limit(1000, 60, 50)));
    tpatch(r#"{}"#).apply(&mut t, now).expect("valid");
    assert_eq!(t.rate_limit, Some(limit(1000, 60, 50)));
    let bad = tpatch(r#"{"rate_limit":{"requests":1000,"per_seconds":86401}}"#).apply(&mut t, now);
    assert_eq!(bad.err().map(|e| e.code()), Some("invalid_rate_limit"));
    tpatch(r#"{"rate_limit":null}"#)
        .apply(&mut t, now)
        .expect("valid");
    assert_eq!(t.rate_limit, None);
    let created: CreateTenant = serde_json::from_str(
        r#"{"id":"acme","name":"A","rate_limit":{"requests":10,"per_seconds":1}}"#,
    )
    .expect("json");
    assert_eq!(
        created.validate(now).map(|t| t.rate_limit),
        Ok(Some(limit(10, 1, 10)))
    );
}
