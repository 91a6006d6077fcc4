//! Admin keys: global (root) and tenant-bound.
use std::sync::Arc;

use portcullis_core::model::AdminKey;

use super::{
    admin_key, assert_conflict, assert_not_found, at, new_hash, scope, stored_tenant, tid,
};
use crate::Store;

fn by_id(mut keys: Vec<AdminKey>) -> Vec<AdminKey> {
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    keys
}

/// Create, find by hash, list, count, revoke (idempotently), record use.
pub async fn admin_key_lifecycle(store: Arc<dyn Store>) {
    assert_eq!(store.count_admin_keys().await.expect("count"), 0);
    assert!(store.list_admin_keys().await.expect("list").is_empty());
    stored_tenant(store.as_ref(), "acme").await;
    let (root, hr) = admin_key("root", None);
    let (bound, hb) = admin_key("acme ops", Some("acme"));
    store
        .create_admin_key(&root, &hr)
        .await
        .expect("create root");
    store
        .create_admin_key(&bound, &hb)
        .await
        .expect("create bound");
    assert_eq!(store.count_admin_keys().await.expect("count"), 2);

    assert_eq!(
        store.find_admin_key(&hr).await.expect("find"),
        Some(root.clone())
    );
    assert_eq!(
        store.find_admin_key(&hb).await.expect("find"),
        Some(bound.clone())
    );
    assert_eq!(store.find_admin_key(&new_hash()).await.expect("find"), None);
    assert_eq!(
        by_id(store.list_admin_keys().await.expect("list")),
        by_id(vec![root.clone(), bound.clone()])
    );

    let mut dup = admin_key("dup", None).0;
    dup.id = root.id.clone();
    assert_conflict(
        store.create_admin_key(&dup, &new_hash()).await,
        "duplicate admin id",
    );
    let other = admin_key("other", None).0;
    assert_conflict(
        store.create_admin_key(&other, &hr).await,
        "duplicate admin hash",
    );
    assert_eq!(
        store.count_admin_keys().await.expect("count"),
        2,
        "nothing added"
    );

    let revoked = store
        .revoke_admin_key(&root.id, at(30))
        .await
        .expect("revoke");
    let mut expected = root.clone();
    expected.revoked_at = Some(at(30));
    assert_eq!(revoked, expected);
    let again = store
        .revoke_admin_key(&root.id, at(40))
        .await
        .expect("revoke again");
    assert_eq!(again, expected, "the first revocation is kept");
    assert_eq!(
        store.find_admin_key(&hr).await.expect("find"),
        Some(expected.clone()),
        "a revoked admin key still resolves (and is refused by its revocation)"
    );
    assert_eq!(
        store.count_admin_keys().await.expect("count"),
        2,
        "revoked keys count"
    );
    assert_not_found(
        store
            .revoke_admin_key("adm_00000000000000000000000000", at(30))
            .await,
        "revoke of a missing admin key",
    );

    store
        .touch_keys(&[(bound.id.clone(), at(50))])
        .await
        .expect("touch admin key");
    let used = store
        .find_admin_key(&hb)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(used.last_used_at, Some(at(50)));
    assert_eq!(used.revoked_at, None, "revoking one key leaves the other");
}

/// Every field of an admin key reads back exactly as written.
pub async fn admin_key_round_trip(store: Arc<dyn Store>) {
    stored_tenant(store.as_ref(), "acme").await;
    let (mut k, h) = admin_key("Ops — Zürich", Some("acme"));
    k.scopes = vec![scope("keys:*"), scope("tenants:read")];
    k.hint = "pc_admin_…abcd".to_owned();
    k.revoked_at = Some(at(100));
    k.last_used_at = Some(at(50));
    store.create_admin_key(&k, &h).await.expect("create");
    assert_eq!(
        store.find_admin_key(&h).await.expect("find"),
        Some(k.clone())
    );
    assert_eq!(
        store.list_admin_keys().await.expect("list"),
        vec![k.clone()]
    );
    assert_eq!(k.tenant_id, Some(tid("acme")));
}

/// An admin key bound to a missing tenant is refused and nothing is written.
pub async fn admin_key_needs_tenant(store: Arc<dyn Store>) {
    let (k, h) = admin_key("orphan", Some("ghost"));
    assert_not_found(
        store.create_admin_key(&k, &h).await,
        "admin key of a missing tenant",
    );
    assert_eq!(store.find_admin_key(&h).await.expect("find"), None);
    assert_eq!(store.count_admin_keys().await.expect("count"), 0);
}
