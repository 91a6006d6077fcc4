//! Rate limits: a key's own and its tenant's, created, changed, removed and read back; the
//! tenant's limit comes with every key a hash resolves to.
use std::sync::Arc;

use portcullis_core::{
    error::ValidationError,
    model::{ApiKey, Tenant},
    ratelimit::RateLimit,
    request::{CreateKey, CreateTenant, KeyPolicy, UpdateKey, UpdateTenant},
    tenant::{Environment, TenantId},
};

use super::{at, limit, new_hash, stored_key, stored_tenant, t0};
use crate::{KeyFilter, PageRequest, Store, StoreError};

fn all() -> PageRequest {
    PageRequest {
        after: None,
        limit: 100,
    }
}

/// Applies a key patch in the store.
async fn patch_key(store: &dyn Store, t: &Tenant, id: &str, patch: UpdateKey) -> ApiKey {
    let tc = t.clone();
    store
        .update_key(
            &t.id,
            id,
            Box::new(move |k| patch.apply(k, &tc, &KeyPolicy::default(), at(30))),
        )
        .await
        .expect("update key")
}

/// Applies a tenant patch in the store.
async fn patch_tenant(
    store: &dyn Store,
    id: &TenantId,
    patch: UpdateTenant,
) -> crate::Result<Tenant> {
    store
        .update_tenant(id, Box::new(move |t| patch.apply(t, at(30))))
        .await
}

/// The key's limit as read by id, in a listing and through its hash: all three must agree.
async fn read_key_limit(
    store: &dyn Store,
    t: &Tenant,
    k: &ApiKey,
    h: &portcullis_core::hash::KeyHash,
) -> Option<RateLimit> {
    let by_id = store
        .get_key(&t.id, &k.id)
        .await
        .expect("get")
        .expect("found");
    let listed = store
        .list_keys(&t.id, &KeyFilter::default(), &all())
        .await
        .expect("list")
        .items
        .into_iter()
        .find(|x| x.id == k.id)
        .expect("listed");
    let found = store.find_key(h).await.expect("find").expect("resolves");
    assert_eq!(by_id, listed, "get and list agree");
    assert_eq!(by_id, found.key, "get and find agree");
    by_id.rate_limit
}

/// A key's own limit is stored at creation, replaced, kept by edits of other fields, and
/// removed; every read returns it as it is.
pub async fn key_rate_limit_round_trip(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let new = CreateKey {
        name: "limited".to_owned(),
        environment: Environment::Live,
        scopes: vec![],
        expires_at: None,
        ip_allowlist: vec![],
        metadata: None,
        external_id: None,
        rate_limit: Some(limit(100, 60, 20).into()),
    }
    .create(&t, &KeyPolicy::default(), t0())
    .expect("valid key");
    let h = new_hash();
    store.create_key(&new.key, &h).await.expect("create");
    let k = new.key;
    let (plain, hp) = stored_key(store.as_ref(), &t, "plain", Environment::Live).await;
    let s = store.as_ref();
    assert_eq!(
        read_key_limit(s, &t, &k, &h).await,
        Some(limit(100, 60, 20))
    );
    assert_eq!(read_key_limit(s, &t, &plain, &hp).await, None);

    let set = UpdateKey {
        rate_limit: Some(Some(limit(5, 1, 10).into())),
        ..Default::default()
    };
    let updated = patch_key(s, &t, &k.id, set).await;
    assert_eq!(updated.rate_limit, Some(limit(5, 1, 10)));
    assert_eq!(read_key_limit(s, &t, &k, &h).await, Some(limit(5, 1, 10)));

    let rename = UpdateKey {
        name: Some("renamed".to_owned()),
        ..Default::default()
    };
    patch_key(s, &t, &k.id, rename).await;
    assert_eq!(
        read_key_limit(s, &t, &k, &h).await,
        Some(limit(5, 1, 10)),
        "an edit without rate_limit keeps it"
    );

    // An invalid limit is refused and nothing is written.
    let tc = t.clone();
    let bad = UpdateKey {
        name: Some("half-applied".to_owned()),
        rate_limit: Some(Some(limit(5, 0, 10).into())),
        ..Default::default()
    };
    let r = store
        .update_key(
            &t.id,
            &k.id,
            Box::new(move |k| bad.apply(k, &tc, &KeyPolicy::default(), at(40))),
        )
        .await;
    assert!(
        matches!(
            r,
            Err(StoreError::Invalid(ValidationError::InvalidRateLimit(_)))
        ),
        "{r:?}"
    );
    let kept = store
        .get_key(&t.id, &k.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (kept.name.as_str(), kept.rate_limit),
        ("renamed", Some(limit(5, 1, 10)))
    );

    let clear = UpdateKey {
        rate_limit: Some(None),
        ..Default::default()
    };
    assert_eq!(patch_key(s, &t, &k.id, clear).await.rate_limit, None);
    assert_eq!(read_key_limit(s, &t, &k, &h).await, None);
    assert_eq!(
        read_key_limit(s, &t, &plain, &hp).await,
        None,
        "other keys untouched"
    );
}

/// A tenant's limit is stored at creation, replaced, kept by edits of other fields, and
/// removed.
pub async fn tenant_rate_limit_round_trip(store: Arc<dyn Store>) {
    let limited = CreateTenant {
        id: "limited".to_owned(),
        name: "Limited".to_owned(),
        key_prefix: None,
        max_key_lifetime_seconds: None,
        rate_limit: Some(limit(1_000, 60, 1_000).into()),
        allowed_scopes: None,
        max_key_rate_limit: None,
    }
    .validate(t0())
    .expect("valid tenant");
    store.create_tenant(&limited).await.expect("create");
    let plain = stored_tenant(store.as_ref(), "plain").await;
    let read = |id: TenantId| {
        let store = store.clone();
        async move {
            let got = store.get_tenant(&id).await.expect("get").expect("found");
            let listed = store
                .list_tenants(&all())
                .await
                .expect("list")
                .items
                .into_iter()
                .find(|t| t.id == id)
                .expect("listed");
            assert_eq!(got, listed, "get and list agree");
            got.rate_limit
        }
    };
    assert_eq!(
        read(limited.id.clone()).await,
        Some(limit(1_000, 60, 1_000))
    );
    assert_eq!(read(plain.id.clone()).await, None);

    let s = store.as_ref();
    let set = UpdateTenant {
        rate_limit: Some(Some(limit(10, 1, 50).into())),
        ..Default::default()
    };
    let updated = patch_tenant(s, &limited.id, set).await.expect("set");
    assert_eq!(updated.rate_limit, Some(limit(10, 1, 50)));
    assert_eq!(read(limited.id.clone()).await, Some(limit(10, 1, 50)));

    let rename = UpdateTenant {
        name: Some("Renamed".to_owned()),
        ..Default::default()
    };
    patch_tenant(s, &limited.id, rename).await.expect("rename");
    assert_eq!(read(limited.id.clone()).await, Some(limit(10, 1, 50)));

    let bad = UpdateTenant {
        name: Some("half-applied".to_owned()),
        rate_limit: Some(Some(limit(0, 1, 1).into())),
        ..Default::default()
    };
    let r = patch_tenant(s, &limited.id, bad).await;
    assert!(
        matches!(
            r,
            Err(StoreError::Invalid(ValidationError::InvalidRateLimit(_)))
        ),
        "{r:?}"
    );
    let kept = s
        .get_tenant(&limited.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (kept.name.as_str(), kept.rate_limit),
        ("Renamed", Some(limit(10, 1, 50)))
    );

    let clear = UpdateTenant {
        rate_limit: Some(None),
        ..Default::default()
    };
    let cleared = patch_tenant(s, &limited.id, clear).await.expect("clear");
    assert_eq!(cleared.rate_limit, None);
    assert_eq!(read(limited.id.clone()).await, None);
}

/// `find_key` returns the tenant's current limit beside the key's own, for every key of the
/// tenant and for no other tenant's keys.
pub async fn find_key_reports_tenant_rate_limit(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let t = stored_tenant(s, "acme").await;
    let other = stored_tenant(s, "other").await;
    let (a, ha) = stored_key(s, &t, "a", Environment::Live).await;
    let (_, hb) = stored_key(s, &t, "b", Environment::Test).await;
    let (_, ho) = stored_key(s, &other, "o", Environment::Live).await;
    let own = UpdateKey {
        rate_limit: Some(Some(limit(7, 1, 7).into())),
        ..Default::default()
    };
    patch_key(s, &t, &a.id, own).await;
    let tenant_limit = |h| async move {
        let m = s.find_key(&h).await.expect("find").expect("found");
        (m.key.rate_limit, m.tenant_rate_limit)
    };
    assert_eq!(tenant_limit(ha).await, (Some(limit(7, 1, 7)), None));
    assert_eq!(tenant_limit(hb).await, (None, None));

    let set = UpdateTenant {
        rate_limit: Some(Some(limit(600, 60, 100).into())),
        ..Default::default()
    };
    patch_tenant(s, &t.id, set).await.expect("set");
    let tl = Some(limit(600, 60, 100));
    assert_eq!(
        tenant_limit(ha).await,
        (Some(limit(7, 1, 7)), tl),
        "the key's own limit and its tenant's, side by side"
    );
    assert_eq!(tenant_limit(hb).await, (None, tl));
    assert_eq!(
        tenant_limit(ho).await,
        (None, None),
        "other tenant unaffected"
    );

    // A rolled-away secret resolves with the tenant's limit too.
    let rolled_to = new_hash();
    s.roll_key(&t.id, &a.id, &rolled_to, "hint", at(3_600), at(10))
        .await
        .expect("roll");
    assert_eq!(tenant_limit(ha).await.1, tl);
    assert_eq!(tenant_limit(rolled_to).await.1, tl);

    let clear = UpdateTenant {
        rate_limit: Some(None),
        ..Default::default()
    };
    patch_tenant(s, &t.id, clear).await.expect("clear");
    assert_eq!(tenant_limit(rolled_to).await, (Some(limit(7, 1, 7)), None));
    assert_eq!(tenant_limit(hb).await, (None, None));
}
