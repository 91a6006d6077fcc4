//! The change feed: every change a cache must hear of is an entry, in order, once.
use std::sync::Arc;

use portcullis_core::tenant::{Environment, TenantStatus};

use super::{admin_key, at, stored_key, stored_tenant};
use crate::{ChangeTarget, Store, StoreError};

/// The targets of the entries after `after`.
async fn targets(store: &dyn Store, after: u64) -> Vec<ChangeTarget> {
    let changes = store.changes_after(after, 0).await.expect("changes");
    let ids: Vec<u64> = changes.iter().map(|c| c.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing: {ids:?}");
    assert!(ids.iter().all(|&id| id > after), "after {after}: {ids:?}");
    changes.into_iter().map(|c| c.target).collect()
}

/// Edits, rolls, revocations and tenant edits are entries in order; creations, reads, last use
/// and repeated revocations are not; a refused edit writes none.
pub async fn change_feed_records_changes(store: Arc<dyn Store>) {
    assert_eq!(
        store.latest_change().await.expect("latest"),
        0,
        "empty feed"
    );
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, _) = stored_key(store.as_ref(), &t, "a", Environment::Live).await;
    let (a, ah) = admin_key("ops", None);
    store.create_admin_key(&a, &ah).await.expect("admin");
    store
        .touch_keys(&[(k.id.clone(), at(1))])
        .await
        .expect("touch");
    assert_eq!(
        store.latest_change().await.expect("latest"),
        0,
        "no change yet"
    );

    let key = ChangeTarget::Key {
        tenant: t.id.clone(),
        id: k.id.clone(),
    };
    store
        .update_key(
            &t.id,
            &k.id,
            Box::new(|k| {
                k.name = "b".into();
                Ok(())
            }),
        )
        .await
        .expect("update");
    let refused = store
        .update_key(
            &t.id,
            &k.id,
            Box::new(|_| Err(portcullis_core::error::ValidationError::InvalidScope { index: 0 })),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    store
        .roll_key(&t.id, &k.id, &super::new_hash(), "h", at(10), at(2))
        .await
        .expect("roll");
    store.revoke_key(&t.id, &k.id, at(3)).await.expect("revoke");
    store.revoke_key(&t.id, &k.id, at(4)).await.expect("again");
    store
        .update_tenant(
            &t.id,
            Box::new(|t| {
                t.status = TenantStatus::Suspended;
                Ok(())
            }),
        )
        .await
        .expect("suspend");
    store
        .revoke_admin_key(&a.id, at(5))
        .await
        .expect("revoke admin");
    store.revoke_admin_key(&a.id, at(6)).await.expect("again");

    let all = targets(store.as_ref(), 0).await;
    assert_eq!(
        all,
        vec![
            key.clone(),
            key.clone(),
            key.clone(),
            ChangeTarget::Tenant(t.id.clone()),
            ChangeTarget::AdminKey { id: a.id.clone() },
        ]
    );
    let latest = store.latest_change().await.expect("latest");
    let entries = store.changes_after(0, 0).await.expect("changes");
    assert_eq!(entries.last().map(|c| c.id), Some(latest));
    // Reading after an entry, and in pages.
    let after_second = entries[1].id;
    assert_eq!(
        targets(store.as_ref(), after_second).await,
        all[2..].to_vec()
    );
    let page = store.changes_after(0, 2).await.expect("page");
    assert_eq!(page, entries[..2].to_vec());
    assert!(
        store
            .changes_after(latest, 0)
            .await
            .expect("none")
            .is_empty()
    );
}
