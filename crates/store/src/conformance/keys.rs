//! Keys: creation, exact reading back, tenant isolation, resolution by hash, listing.
use std::sync::Arc;

use portcullis_core::{
    ip::IpAllowlist,
    model::ApiKey,
    request::UpdateTenant,
    tenant::{Environment, TenantStatus},
};
use serde_json::json;

use super::{
    assert_conflict, assert_not_found, at, key, new_hash, scope, sorted, stored_key, stored_tenant,
    tenant, tid,
};
use crate::{KeyFilter, Page, PageRequest, Store, StoreError};

fn page(limit: u32) -> PageRequest {
    PageRequest { after: None, limit }
}

fn key_ids(p: &Page<ApiKey>) -> Vec<String> {
    p.items.iter().map(|k| k.id.clone()).collect()
}

/// A key of a tenant that does not exist is refused, and nothing is written.
pub async fn key_create_needs_tenant(store: Arc<dyn Store>) {
    stored_tenant(store.as_ref(), "acme").await;
    let ghost = tenant("ghost");
    let (k, h) = key(&ghost, "orphan", Environment::Live);
    assert_not_found(store.create_key(&k, &h).await, "key of a missing tenant");
    assert_eq!(store.find_key(&h).await.expect("find"), None);
    assert_eq!(store.get_key(&ghost.id, &k.id).await.expect("get"), None);
}

/// Every field of a key reads back exactly as written: by id, by hash and in a list.
pub async fn key_round_trip(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (minimal, h_min) = key(&t, "minimal", Environment::Test);
    let (mut full, h_full) = key(&t, "full — Zürich ✓", Environment::Live);
    full.scopes = vec![
        scope("*:read"),
        scope("invoices:*"),
        scope("payments.v2:write-all"),
    ];
    full.ip_allowlist =
        IpAllowlist::parse(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"]).expect("valid");
    full.metadata = json!({
        "plan": "pro",
        "seats": 5,
        "ratio": 1.5,
        "big": u64::MAX,
        "negative": -7,
        "nested": {"a": [1, "two", null, true, {"b": false}]},
        "text": "Zürich ✓ \"quoted\" \\ \n newline",
        "empty": {},
    })
    .as_object()
    .cloned()
    .expect("object");
    full.external_id = Some("cust_42 / ünïcode".to_owned());
    full.rate_limit = Some(super::limit(250, 1, 500));
    full.updated_at = at(10);
    full.expires_at = Some(at(90 * 86_400));
    full.revoked_at = Some(at(20));
    full.last_used_at = Some(at(15));
    store
        .create_key(&minimal, &h_min)
        .await
        .expect("create minimal");
    store.create_key(&full, &h_full).await.expect("create full");

    for k in [&minimal, &full] {
        assert_eq!(
            store.get_key(&t.id, &k.id).await.expect("get").as_ref(),
            Some(k)
        );
    }
    let m = store.find_key(&h_full).await.expect("find").expect("found");
    assert_eq!(m.key, full);
    assert_eq!(m.tenant_status, TenantStatus::Active);
    assert_eq!(m.secret_expires_at, None);
    assert_eq!(
        store.find_key(&h_min).await.expect("find").map(|m| m.key),
        Some(minimal.clone())
    );
    let list = store
        .list_keys(&t.id, &KeyFilter::default(), &page(10))
        .await
        .expect("list");
    let mut expected = vec![minimal, full];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(list.items, expected);
}

/// A key id or a hash that is taken is refused, and nothing of the refused key is written.
pub async fn key_duplicate_conflicts(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k1, h1) = stored_key(store.as_ref(), &t, "first", Environment::Live).await;

    let mut same_id = k1.clone();
    same_id.name = "second".to_owned();
    let h2 = new_hash();
    assert_conflict(store.create_key(&same_id, &h2).await, "duplicate key id");
    assert_eq!(
        store.find_key(&h2).await.expect("find"),
        None,
        "hash of a refused key"
    );
    assert_eq!(
        store.get_key(&t.id, &k1.id).await.expect("get"),
        Some(k1.clone())
    );

    let (other, _) = key(&t, "other", Environment::Live);
    assert_conflict(store.create_key(&other, &h1).await, "duplicate hash");
    assert_eq!(
        store.get_key(&t.id, &other.id).await.expect("get"),
        None,
        "refused key"
    );
    assert_eq!(
        store.find_key(&h1).await.expect("find").map(|m| m.key),
        Some(k1)
    );
}

/// A key cannot be read, listed or changed through another tenant's id.
pub async fn key_tenant_isolation(store: Arc<dyn Store>) {
    let acme = stored_tenant(store.as_ref(), "acme").await;
    let evil = stored_tenant(store.as_ref(), "evil").await;
    let (k, h) = stored_key(store.as_ref(), &acme, "victim", Environment::Live).await;
    let (own, _) = stored_key(store.as_ref(), &evil, "own", Environment::Live).await;

    assert_eq!(store.get_key(&evil.id, &k.id).await.expect("get"), None);
    assert_eq!(store.get_key(&acme.id, &own.id).await.expect("get"), None);
    assert_eq!(
        store.get_key(&tid("ghost"), &k.id).await.expect("get"),
        None
    );
    let listed = store
        .list_keys(&evil.id, &KeyFilter::default(), &page(100))
        .await
        .expect("list");
    assert_eq!(
        listed.items,
        vec![own.clone()],
        "only the tenant's own keys are listed"
    );
    let cursor = PageRequest {
        after: Some(k.id.clone()),
        limit: 100,
    };
    let listed = store
        .list_keys(&evil.id, &KeyFilter::default(), &cursor)
        .await
        .expect("list");
    assert!(listed.items.iter().all(|x| x.tenant_id == evil.id));

    let r = store
        .update_key(
            &evil.id,
            &k.id,
            Box::new(|k| {
                k.name = "pwned".to_owned();
                Ok(())
            }),
        )
        .await;
    assert_not_found(r, "update through another tenant");
    let new = new_hash();
    let r = store
        .roll_key(&evil.id, &k.id, &new, "evil…hint", at(0), at(0))
        .await;
    assert_not_found(r, "roll through another tenant");
    assert_eq!(store.find_key(&new).await.expect("find"), None);
    assert_not_found(
        store.revoke_key(&evil.id, &k.id, at(0)).await,
        "revoke through another tenant",
    );
    match store.key_hashes(&evil.id, &k.id).await {
        Ok(v) => assert!(v.is_empty(), "hashes through another tenant: {v:?}"),
        Err(StoreError::NotFound) => {}
        Err(e) => panic!("hashes through another tenant: {e:?}"),
    }

    assert_eq!(
        store.get_key(&acme.id, &k.id).await.expect("get"),
        Some(k.clone()),
        "unchanged"
    );
    let m = store
        .find_key(&h)
        .await
        .expect("find")
        .expect("still resolves");
    assert_eq!(m.key, k);
    assert_eq!(m.secret_expires_at, None, "not rolled");
    assert_eq!(
        store.key_hashes(&acme.id, &k.id).await.expect("hashes"),
        vec![h]
    );
}

/// A hash resolves to its key and the tenant's status; an unknown hash to nothing.
pub async fn find_key_resolves_hash(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (a, ha) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let (b, hb) = stored_key(store.as_ref(), &t, "b", Environment::Test).await;
    let ma = store.find_key(&ha).await.expect("find").expect("a");
    assert_eq!(
        (ma.key, ma.tenant_status, ma.secret_expires_at),
        (a.clone(), TenantStatus::Active, None)
    );
    let mb = store.find_key(&hb).await.expect("find").expect("b");
    assert_eq!(mb.key, b);
    assert_eq!(store.find_key(&new_hash()).await.expect("find"), None);
    assert_eq!(
        store.key_hashes(&t.id, &a.id).await.expect("hashes"),
        vec![ha]
    );
    assert_eq!(
        sorted(store.key_hashes(&t.id, &b.id).await.expect("hashes")),
        vec![hb]
    );
}

/// A suspended tenant shows in the match (the decision rejects it), and so does reactivation.
pub async fn find_key_reports_tenant_status(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, h) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let set = |status| {
        let patch = UpdateTenant {
            status: Some(status),
            ..Default::default()
        };
        Box::new(move |t: &mut portcullis_core::model::Tenant| patch.apply(t, at(5)))
    };
    store
        .update_tenant(&t.id, set(TenantStatus::Suspended))
        .await
        .expect("suspend");
    let m = store
        .find_key(&h)
        .await
        .expect("find")
        .expect("still found");
    assert_eq!(m.tenant_status, TenantStatus::Suspended);
    assert_eq!(m.key, k, "the key itself is unchanged");
    store
        .update_tenant(&t.id, set(TenantStatus::Active))
        .await
        .expect("reactivate");
    let m = store.find_key(&h).await.expect("find").expect("found");
    assert_eq!(m.tenant_status, TenantStatus::Active);
}

/// Filters by environment, revocation and external id, alone and combined.
pub async fn list_keys_filters(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let other = stored_tenant(store.as_ref(), "other").await;
    let make = async |name: &str, env, ext: Option<&str>| {
        let (mut k, h) = key(&t, name, env);
        k.external_id = ext.map(str::to_owned);
        store.create_key(&k, &h).await.expect("create");
        k
    };
    let a = make("a", Environment::Live, Some("cust-1")).await;
    let b = make("b", Environment::Test, Some("cust-1")).await;
    let c = make("c", Environment::Live, Some("cust-2")).await;
    let d = make("d", Environment::Live, None).await;
    let (mut foreign, fh) = key(&other, "foreign", Environment::Live);
    foreign.external_id = Some("cust-1".to_owned());
    store.create_key(&foreign, &fh).await.expect("create");
    let d = store
        .revoke_key(&t.id, &d.id, at(30))
        .await
        .expect("revoke");

    let list = async |f: KeyFilter| {
        let got = store.list_keys(&t.id, &f, &page(100)).await.expect("list");
        assert_eq!(got.next_cursor, None);
        got.items
    };
    let expect = |keys: &[&ApiKey]| {
        let mut v: Vec<ApiKey> = keys.iter().map(|k| (*k).clone()).collect();
        v.sort_by(|x, y| x.id.cmp(&y.id));
        v
    };
    let env = |e| KeyFilter {
        environment: Some(e),
        ..Default::default()
    };
    let revoked = |r| KeyFilter {
        revoked: Some(r),
        ..Default::default()
    };
    let ext = |x: &str| KeyFilter {
        external_id: Some(x.to_owned()),
        ..Default::default()
    };

    assert_eq!(list(KeyFilter::default()).await, expect(&[&a, &b, &c, &d]));
    assert_eq!(list(env(Environment::Live)).await, expect(&[&a, &c, &d]));
    assert_eq!(list(env(Environment::Test)).await, expect(&[&b]));
    assert_eq!(list(revoked(true)).await, expect(&[&d]));
    assert_eq!(list(revoked(false)).await, expect(&[&a, &b, &c]));
    assert_eq!(list(ext("cust-1")).await, expect(&[&a, &b]));
    assert_eq!(list(ext("cust-2")).await, expect(&[&c]));
    assert_eq!(list(ext("nobody")).await, expect(&[]));
    let live_cust1 = KeyFilter {
        environment: Some(Environment::Live),
        revoked: Some(false),
        external_id: Some("cust-1".to_owned()),
    };
    assert_eq!(list(live_cust1).await, expect(&[&a]));
    let test_revoked = KeyFilter {
        environment: Some(Environment::Test),
        revoked: Some(true),
        external_id: None,
    };
    assert_eq!(list(test_revoked).await, expect(&[]));
}

/// Cursor pagination of keys, with and without a filter.
pub async fn list_keys_pages(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let mut all = Vec::new();
    for i in 0..5 {
        let env = if i % 2 == 0 {
            Environment::Live
        } else {
            Environment::Test
        };
        all.push(
            stored_key(store.as_ref(), &t, &format!("k{i}"), env)
                .await
                .0,
        );
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let everything = KeyFilter::default();

    let p1 = store
        .list_keys(&t.id, &everything, &page(2))
        .await
        .expect("p1");
    assert_eq!(p1.items, all[0..2]);
    assert_eq!(p1.next_cursor.as_deref(), Some(all[1].id.as_str()));
    let next = |c: Option<String>| PageRequest { after: c, limit: 2 };
    let p2 = store
        .list_keys(&t.id, &everything, &next(p1.next_cursor))
        .await
        .expect("p2");
    assert_eq!(p2.items, all[2..4]);
    assert_eq!(p2.next_cursor.as_deref(), Some(all[3].id.as_str()));
    let p3 = store
        .list_keys(&t.id, &everything, &next(p2.next_cursor))
        .await
        .expect("p3");
    assert_eq!(p3.items, all[4..5]);
    assert_eq!(p3.next_cursor, None);

    // Pages of one through the live keys only.
    let live: Vec<String> = all
        .iter()
        .filter(|k| k.environment == Environment::Live)
        .map(|k| k.id.clone())
        .collect();
    let filter = KeyFilter {
        environment: Some(Environment::Live),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let p = store
            .list_keys(
                &t.id,
                &filter,
                &PageRequest {
                    after: cursor,
                    limit: 1,
                },
            )
            .await
            .expect("page");
        assert!(p.items.len() <= 1);
        seen.extend(key_ids(&p));
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        seen, live,
        "filtered pages in id order, ending without a cursor"
    );
}
