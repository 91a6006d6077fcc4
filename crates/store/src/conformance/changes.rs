//! Changes to keys: edits, rolls, revocation, last use, and concurrent edits.
use std::sync::Arc;

use portcullis_core::{
    error::ValidationError,
    ip::IpAllowlist,
    model::ApiKey,
    request::{Rfc3339, UpdateKey},
    tenant::{Environment, TenantId},
};
use serde_json::{Map, Value, json};

use super::{assert_not_found, at, key, new_hash, scope, sorted, stored_key, stored_tenant, tid};
use crate::{Store, StoreError};

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

/// An edit's changes to scopes, expiry, allowlist, metadata and external id are stored exactly.
pub async fn update_key_round_trip(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, h) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let meta = object(
        json!({"plan": "enterprise", "limits": {"rps": 250, "burst": [1, 2.5]}, "ok": true}),
    );
    let patch = UpdateKey {
        name: Some("renamed".to_owned()),
        scopes: Some(vec!["payments:write".to_owned(), "invoices:*".to_owned()]),
        expires_at: Some(Some(Rfc3339(at(7 * 86_400)))),
        ip_allowlist: Some(vec![
            "203.0.113.0/24".to_owned(),
            "2001:db8:abcd::/48".to_owned(),
        ]),
        metadata: Some(meta.clone()),
        external_id: Some(Some("cust-9".to_owned())),
        rate_limit: Some(Some(super::limit(60, 60, 10).into())),
    };
    let tc = t.clone();
    let updated = store
        .update_key(
            &t.id,
            &k.id,
            Box::new(move |k| patch.apply(k, &tc, &Default::default(), at(60))),
        )
        .await
        .expect("update");
    assert_eq!(updated.name, "renamed");
    assert_eq!(
        updated.scopes,
        vec![scope("invoices:*"), scope("payments:write")]
    );
    assert_eq!(updated.expires_at, Some(at(7 * 86_400)));
    assert_eq!(
        updated.ip_allowlist,
        IpAllowlist::parse(&["203.0.113.0/24", "2001:db8:abcd::/48"]).expect("valid")
    );
    assert_eq!(updated.metadata, meta);
    assert_eq!(updated.external_id.as_deref(), Some("cust-9"));
    assert_eq!(updated.rate_limit, Some(super::limit(60, 60, 10)));
    assert_eq!(updated.updated_at, at(60));
    assert_eq!(
        (updated.id.as_str(), updated.created_at),
        (k.id.as_str(), k.created_at)
    );
    assert_eq!(
        store.get_key(&t.id, &k.id).await.expect("get"),
        Some(updated.clone())
    );
    assert_eq!(
        store.find_key(&h).await.expect("find").map(|m| m.key),
        Some(updated.clone())
    );

    // Clearing: null expiry, external id and rate limit, empty lists and metadata.
    let clear = UpdateKey {
        scopes: Some(vec![]),
        expires_at: Some(None),
        ip_allowlist: Some(vec![]),
        metadata: Some(Map::new()),
        external_id: Some(None),
        rate_limit: Some(None),
        ..Default::default()
    };
    let tc = t.clone();
    let cleared = store
        .update_key(
            &t.id,
            &k.id,
            Box::new(move |k| clear.apply(k, &tc, &Default::default(), at(120))),
        )
        .await
        .expect("clear");
    assert!(cleared.scopes.is_empty() && cleared.ip_allowlist.is_empty());
    assert!(cleared.metadata.is_empty());
    assert_eq!(
        (
            cleared.expires_at,
            cleared.external_id.as_deref(),
            cleared.rate_limit
        ),
        (None, None, None)
    );
    assert_eq!(
        store.get_key(&t.id, &k.id).await.expect("get"),
        Some(cleared)
    );
}

/// An edit that fails validation writes nothing, even what it changed before failing.
pub async fn update_key_error_writes_nothing(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, _) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let too_many: Map<String, Value> = (0..40).map(|i| (format!("k{i}"), json!(i))).collect();
    let patch = UpdateKey {
        name: Some("half-applied".to_owned()),
        scopes: Some(vec!["x:y".to_owned()]),
        metadata: Some(too_many),
        ..Default::default()
    };
    let tc = t.clone();
    let r = store
        .update_key(
            &t.id,
            &k.id,
            Box::new(move |k| patch.apply(k, &tc, &Default::default(), at(9))),
        )
        .await;
    assert!(
        matches!(
            r,
            Err(StoreError::Invalid(ValidationError::InvalidMetadata(_)))
        ),
        "{r:?}"
    );
    let r = store
        .update_key(
            &t.id,
            &k.id,
            Box::new(|k| {
                k.scopes.clear();
                k.expires_at = Some(at(1));
                Err(ValidationError::InvalidScope { index: 3 })
            }),
        )
        .await;
    assert!(
        matches!(
            r,
            Err(StoreError::Invalid(ValidationError::InvalidScope {
                index: 3
            }))
        ),
        "{r:?}"
    );
    assert_eq!(
        store.get_key(&t.id, &k.id).await.expect("get"),
        Some(k),
        "unchanged"
    );
    let r = store
        .update_key(
            &t.id,
            "key_00000000000000000000000000",
            Box::new(|_| panic!("must not run")),
        )
        .await;
    assert_not_found(r, "update of a missing key");
}

/// An edit cannot move a key, change its environment, hint or usage, or undo a revocation.
pub async fn update_key_keeps_identity(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    stored_tenant(store.as_ref(), "evil").await;
    let (k, _) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let revoked = store.revoke_key(&t.id, &k.id, at(5)).await.expect("revoke");
    let updated = store
        .update_key(
            &t.id,
            &k.id,
            Box::new(|k| {
                k.id = "key_11111111111111111111111111".to_owned();
                k.tenant_id = TenantId::parse("evil").expect("valid");
                k.environment = Environment::Test;
                k.hint = "forged".to_owned();
                k.created_at = at(-1_000);
                k.revoked_at = None;
                k.last_used_at = Some(at(7));
                k.name = "renamed".to_owned();
                k.updated_at = at(8);
                Ok(())
            }),
        )
        .await
        .expect("update");
    let mut expected = revoked.clone();
    expected.name = "renamed".to_owned();
    expected.updated_at = at(8);
    assert_eq!(updated, expected, "only the editable fields changed");
    assert_eq!(
        store.get_key(&t.id, &k.id).await.expect("get"),
        Some(expected)
    );
    assert_eq!(
        store
            .get_key(&tid("evil"), "key_11111111111111111111111111")
            .await
            .expect("get"),
        None
    );
}

/// After a roll the new secret works without end, the old one until the given time.
pub async fn roll_key_new_and_old_secrets(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, h0) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let h1 = new_hash();
    let rolled = store
        .roll_key(&t.id, &k.id, &h1, "acme_live_…wxyz", at(86_400), at(100))
        .await
        .expect("roll");
    assert_eq!(rolled.previous_hashes, vec![h0]);
    let mut expected = k.clone();
    expected.hint = "acme_live_…wxyz".to_owned();
    expected.updated_at = at(100);
    assert_eq!(rolled.key, expected);
    assert_eq!(
        store.get_key(&t.id, &k.id).await.expect("get"),
        Some(expected.clone())
    );

    let new = store
        .find_key(&h1)
        .await
        .expect("find")
        .expect("new secret");
    assert_eq!((new.key, new.secret_expires_at), (expected.clone(), None));
    let old = store
        .find_key(&h0)
        .await
        .expect("find")
        .expect("old secret");
    assert_eq!(
        (old.key, old.secret_expires_at),
        (expected, Some(at(86_400)))
    );
    assert_eq!(
        sorted(store.key_hashes(&t.id, &k.id).await.expect("hashes")),
        sorted(vec![h0, h1])
    );
}

/// Rolling again never extends the life of a secret already rolled away.
pub async fn roll_key_keeps_earliest_expiry(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, h0) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let (h1, h2, h3) = (new_hash(), new_hash(), new_hash());
    let expiry = async |h| {
        store
            .find_key(&h)
            .await
            .expect("find")
            .expect("found")
            .secret_expires_at
    };

    store
        .roll_key(&t.id, &k.id, &h1, "hint-1", at(86_400), at(0))
        .await
        .expect("roll 1");
    let second = store
        .roll_key(&t.id, &k.id, &h2, "hint-2", at(7 * 86_400), at(60))
        .await
        .expect("roll 2");
    assert_eq!(sorted(second.previous_hashes), sorted(vec![h0, h1]));
    assert_eq!(
        expiry(h0).await,
        Some(at(86_400)),
        "the earlier expiry is kept"
    );
    assert_eq!(expiry(h1).await, Some(at(7 * 86_400)));
    assert_eq!(expiry(h2).await, None);

    let third = store
        .roll_key(&t.id, &k.id, &h3, "hint-3", at(3_600), at(120))
        .await
        .expect("roll 3");
    assert_eq!(sorted(third.previous_hashes), sorted(vec![h0, h1, h2]));
    assert_eq!(third.key.hint, "hint-3");
    for h in [h0, h1, h2] {
        assert_eq!(
            expiry(h).await,
            Some(at(3_600)),
            "an earlier expiry applies to all"
        );
    }
    assert_eq!(expiry(h3).await, None);
}

/// A revoked key cannot be rolled; a missing one is not found. Neither writes anything.
pub async fn roll_key_revoked_or_missing(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, h0) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let revoked = store
        .revoke_key(&t.id, &k.id, at(10))
        .await
        .expect("revoke");
    let h1 = new_hash();
    let r = store
        .roll_key(&t.id, &k.id, &h1, "new-hint", at(100), at(20))
        .await;
    assert!(
        matches!(r, Err(StoreError::Revoked)),
        "roll of a revoked key: {r:?}"
    );
    assert_eq!(store.find_key(&h1).await.expect("find"), None);
    let m = store.find_key(&h0).await.expect("find").expect("found");
    assert_eq!(
        (m.key, m.secret_expires_at),
        (revoked, None),
        "nothing changed"
    );
    let r = store
        .roll_key(
            &t.id,
            "key_00000000000000000000000000",
            &h1,
            "x",
            at(100),
            at(20),
        )
        .await;
    assert_not_found(r, "roll of a missing key");
    assert_eq!(store.find_key(&h1).await.expect("find"), None);
}

/// Revocation is idempotent: the first time is kept; the key still resolves (as revoked).
pub async fn revoke_key_idempotent(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, h) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let first = store
        .revoke_key(&t.id, &k.id, at(10))
        .await
        .expect("revoke");
    let mut expected = k.clone();
    expected.revoked_at = Some(at(10));
    expected.updated_at = at(10);
    assert_eq!(first, expected);
    let again = store
        .revoke_key(&t.id, &k.id, at(20))
        .await
        .expect("revoke again");
    assert_eq!(again, expected, "the first revocation is kept");
    assert_eq!(
        store.get_key(&t.id, &k.id).await.expect("get"),
        Some(expected.clone())
    );
    let m = store
        .find_key(&h)
        .await
        .expect("find")
        .expect("revoked keys still resolve");
    assert_eq!(m.key.revoked_at, Some(at(10)));
    assert_not_found(
        store
            .revoke_key(&t.id, "key_00000000000000000000000000", at(10))
            .await,
        "revoke of a missing key",
    );
}

/// `touch_keys` records last use, ignores unknown ids and never moves backwards.
pub async fn touch_keys_records_last_use(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (a, _) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let (b, _) = stored_key(store.as_ref(), &t, "b", Environment::Live).await;
    store.touch_keys(&[]).await.expect("empty batch");
    store
        .touch_keys(&[
            (a.id.clone(), at(100)),
            ("key_00000000000000000000000000".to_owned(), at(100)),
            ("not-even-an-id".to_owned(), at(100)),
        ])
        .await
        .expect("touch");
    let get = async |id: &str| store.get_key(&t.id, id).await.expect("get").expect("found");
    let a1 = get(&a.id).await;
    assert_eq!(a1.last_used_at, Some(at(100)));
    assert_eq!(a1.updated_at, a.updated_at, "use is not a change");
    assert_eq!(get(&b.id).await, b, "other keys untouched");

    store
        .touch_keys(&[(a.id.clone(), at(50))])
        .await
        .expect("older");
    assert_eq!(
        get(&a.id).await.last_used_at,
        Some(at(100)),
        "never backwards"
    );
    store
        .touch_keys(&[
            (a.id.clone(), at(200)),
            (b.id.clone(), at(150)),
            (a.id.clone(), at(180)),
        ])
        .await
        .expect("newer");
    assert_eq!(get(&a.id).await.last_used_at, Some(at(200)));
    assert_eq!(get(&b.id).await.last_used_at, Some(at(150)));
}

/// Concurrent edits of one key are serialised: none is lost.
pub async fn concurrent_updates_all_land(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, _) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (store, tenant, id) = (store.clone(), t.id.clone(), k.id.clone());
        tasks.spawn(async move {
            store
                .update_key(
                    &tenant,
                    &id,
                    Box::new(move |k| {
                        k.scopes.push(scope(&format!("res{i}:read")));
                        k.scopes.sort();
                        Ok(())
                    }),
                )
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("update");
    }
    let stored = store
        .get_key(&t.id, &k.id)
        .await
        .expect("get")
        .expect("found");
    let mut expected = k.scopes.clone();
    expected.extend((0..20).map(|i| scope(&format!("res{i}:read"))));
    expected.sort();
    assert_eq!(stored.scopes, expected, "every concurrent edit landed");
}

/// Keys expiring in a window: across tenants, revoked and unexpiring ones left out, ordered by
/// expiry then id, paged by (expiry, id).
pub async fn keys_expiring_in_window(store: Arc<dyn Store>) {
    let a = stored_tenant(store.as_ref(), "acme").await;
    let b = stored_tenant(store.as_ref(), "beta").await;
    let mut made = Vec::new();
    for (t, name, expiry) in [
        (&a, "soon", Some(100)),
        (&b, "soon-too", Some(100)),
        (&a, "later", Some(500)),
        (&b, "past-window", Some(2_000)),
        (&a, "never", None),
        (&a, "revoked", Some(200)),
        (&b, "before-window", Some(10)),
    ] {
        let (mut k, h) = key(t, name, Environment::Live);
        k.expires_at = expiry.map(at);
        store.create_key(&k, &h).await.expect("create key");
        made.push(k);
    }
    let revoked = made.iter().find(|k| k.name == "revoked").expect("revoked");
    store
        .revoke_key(&a.id, &revoked.id, at(1))
        .await
        .expect("revoke");
    let names = |keys: &[ApiKey]| keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
    let all = store
        .keys_expiring(at(50), at(1_000), None, 0)
        .await
        .expect("expiring");
    let mut soon = vec!["soon".to_owned(), "soon-too".to_owned()];
    let first_two: Vec<_> = made
        .iter()
        .filter(|k| k.expires_at == Some(at(100)))
        .map(|k| (k.id.clone(), k.name.clone()))
        .collect();
    if first_two[0].0 > first_two[1].0 {
        soon.reverse();
    }
    let mut expected = soon.clone();
    expected.push("later".to_owned());
    assert_eq!(names(&all), expected, "window, order, revoked left out");
    // Paging by (expiry, id).
    let p1 = store
        .keys_expiring(at(50), at(1_000), None, 1)
        .await
        .expect("page 1");
    assert_eq!(names(&p1), vec![soon[0].clone()]);
    let cursor = (at(100), p1[0].id.clone());
    let p2 = store
        .keys_expiring(at(50), at(1_000), Some(&cursor), 10)
        .await
        .expect("page 2");
    assert_eq!(names(&p2), vec![soon[1].clone(), "later".to_owned()]);
    // `to` is exclusive, `from` inclusive.
    let edge = store
        .keys_expiring(at(100), at(500), None, 0)
        .await
        .expect("edge");
    assert_eq!(names(&edge), soon);
}
