//! Tenants: creation, reading, listing, editing.
use std::sync::Arc;

use portcullis_core::{
    error::ValidationError,
    request::UpdateTenant,
    tenant::{TenantId, TenantStatus},
};

use super::{assert_conflict, assert_not_found, at, stored_tenant, t0, tenant, tid};
use crate::{PageRequest, Store, StoreError};

/// Every field of a tenant reads back as written.
pub async fn tenant_round_trip(store: Arc<dyn Store>) {
    let mut full = tenant("acme-full");
    full.name = "Acme Bank — Zürich \"HQ\"".to_owned();
    full.status = TenantStatus::Suspended;
    full.key_prefix = "acmezh".to_owned();
    full.max_key_lifetime_seconds = Some(90 * 86_400);
    full.rate_limit = Some(super::limit(1_000_000, 86_400, 1));
    full.allowed_scopes = Some(vec![super::scope("*:read"), super::scope("invoices:*")]);
    full.max_key_rate_limit = Some(super::limit(100, 1, 20));
    full.updated_at = at(3_600);
    store.create_tenant(&full).await.expect("create");
    let plain = tenant("plain");
    store.create_tenant(&plain).await.expect("create");

    assert_eq!(
        store.get_tenant(&full.id).await.expect("get"),
        Some(full.clone())
    );
    assert_eq!(
        store.get_tenant(&plain.id).await.expect("get"),
        Some(plain.clone())
    );
    let all = store
        .list_tenants(&PageRequest {
            after: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(
        all.items,
        vec![full, plain],
        "list returns the records as written, in id order"
    );
    assert_eq!(all.next_cursor, None);
}

/// A second tenant with a taken id is refused and the first is unchanged.
pub async fn tenant_duplicate_conflicts(store: Arc<dyn Store>) {
    let first = stored_tenant(store.as_ref(), "acme").await;
    let mut second = tenant("acme");
    second.name = "Impostor".to_owned();
    assert_conflict(store.create_tenant(&second).await, "duplicate tenant id");
    assert_eq!(store.get_tenant(&first.id).await.expect("get"), Some(first));
}

/// Cursor pagination: 5 tenants, pages of 2 → 2, 2, 1 in id order, no cursor after the last.
pub async fn tenant_list_pages(store: Arc<dyn Store>) {
    for id in ["t-c", "t-a", "t-e", "t-b", "t-d"] {
        stored_tenant(store.as_ref(), id).await;
    }
    let ids = |p: &crate::Page<portcullis_core::model::Tenant>| {
        p.items
            .iter()
            .map(|t| t.id.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let p1 = store
        .list_tenants(&PageRequest {
            after: None,
            limit: 2,
        })
        .await
        .expect("page 1");
    assert_eq!(ids(&p1), ["t-a", "t-b"]);
    assert_eq!(p1.next_cursor.as_deref(), Some("t-b"));
    let p2 = store
        .list_tenants(&PageRequest {
            after: p1.next_cursor,
            limit: 2,
        })
        .await
        .expect("page 2");
    assert_eq!(ids(&p2), ["t-c", "t-d"]);
    assert_eq!(p2.next_cursor.as_deref(), Some("t-d"));
    let p3 = store
        .list_tenants(&PageRequest {
            after: p2.next_cursor,
            limit: 2,
        })
        .await
        .expect("page 3");
    assert_eq!(ids(&p3), ["t-e"]);
    assert_eq!(p3.next_cursor, None, "no cursor after the last page");

    let exact = store
        .list_tenants(&PageRequest {
            after: None,
            limit: 5,
        })
        .await
        .expect("exact page");
    assert_eq!(exact.items.len(), 5);
    assert_eq!(
        exact.next_cursor, None,
        "a page that ends exactly at the end has no cursor"
    );
    let after_last = store
        .list_tenants(&PageRequest {
            after: Some("t-e".to_owned()),
            limit: 2,
        })
        .await
        .expect("after last");
    assert!(after_last.items.is_empty());
    assert_eq!(after_last.next_cursor, None);
    let default = store
        .list_tenants(&PageRequest {
            after: None,
            limit: 0,
        })
        .await
        .expect("limit 0");
    assert_eq!(
        default.items.len(),
        5,
        "limit 0 means the default page size"
    );
}

/// `update_tenant` runs the edit on the stored record and stores the result.
pub async fn tenant_update_edits_in_transaction(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let now = at(60);
    let patch = UpdateTenant {
        name: Some("Acme Renamed".to_owned()),
        status: Some(TenantStatus::Suspended),
        max_key_lifetime_seconds: Some(Some(3_600)),
        ..Default::default()
    };
    let updated = store
        .update_tenant(&t.id, Box::new(move |t| patch.apply(t, now)))
        .await
        .expect("update");
    assert_eq!(updated.name, "Acme Renamed");
    assert_eq!(updated.status, TenantStatus::Suspended);
    assert_eq!(updated.max_key_lifetime_seconds, Some(3_600));
    assert_eq!(updated.updated_at, now);
    assert_eq!(updated.created_at, t.created_at);
    assert_eq!(
        store.get_tenant(&t.id).await.expect("get"),
        Some(updated.clone())
    );

    // The edit sees the stored record, not a stale copy.
    let seen = store
        .update_tenant(
            &t.id,
            Box::new(|t| {
                assert_eq!(t.name, "Acme Renamed", "edit receives the current record");
                t.max_key_lifetime_seconds = None;
                Ok(())
            }),
        )
        .await
        .expect("second update");
    assert_eq!(seen.max_key_lifetime_seconds, None);
    assert_eq!(store.get_tenant(&t.id).await.expect("get"), Some(seen));
}

/// An edit that fails validation writes nothing, even what it changed before failing.
pub async fn tenant_update_error_writes_nothing(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let r = store
        .update_tenant(
            &t.id,
            Box::new(|t| {
                t.status = TenantStatus::Suspended;
                t.name = "half-applied".to_owned();
                Err(ValidationError::InvalidName)
            }),
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::Invalid(ValidationError::InvalidName))),
        "the edit's error is returned: {r:?}"
    );
    let patch = UpdateTenant {
        name: Some("ok".to_owned()),
        max_key_lifetime_seconds: Some(Some(1)),
        ..Default::default()
    };
    let r = store
        .update_tenant(&t.id, Box::new(move |t| patch.apply(t, at(5))))
        .await;
    assert!(
        matches!(
            r,
            Err(StoreError::Invalid(ValidationError::InvalidLifetime))
        ),
        "{r:?}"
    );
    assert_eq!(
        store.get_tenant(&t.id).await.expect("get"),
        Some(t),
        "unchanged"
    );
}

/// An edit cannot move a tenant to another id, prefix or creation time.
pub async fn tenant_update_keeps_identity(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    let updated = store
        .update_tenant(
            &t.id,
            Box::new(|t| {
                t.id = TenantId::parse("elsewhere").expect("valid");
                t.key_prefix = "other".to_owned();
                t.created_at = at(-86_400);
                t.name = "Renamed".to_owned();
                Ok(())
            }),
        )
        .await
        .expect("update");
    assert_eq!(updated.id, t.id);
    assert_eq!(updated.key_prefix, t.key_prefix);
    assert_eq!(updated.created_at, t.created_at);
    assert_eq!(updated.name, "Renamed");
    assert_eq!(store.get_tenant(&t.id).await.expect("get"), Some(updated));
    assert_eq!(
        store.get_tenant(&tid("elsewhere")).await.expect("get"),
        None
    );
}

/// A missing tenant is `None` to read and `NotFound` to edit; the edit does not run.
pub async fn tenant_missing_not_found(store: Arc<dyn Store>) {
    stored_tenant(store.as_ref(), "acme").await;
    assert_eq!(store.get_tenant(&tid("ghost")).await.expect("get"), None);
    let r = store
        .update_tenant(
            &tid("ghost"),
            Box::new(|_| panic!("the edit of a missing tenant must not run")),
        )
        .await;
    assert_not_found(r, "update of a missing tenant");
    assert_eq!(
        store.get_tenant(&tid("ghost")).await.expect("get"),
        None,
        "not created"
    );
    let list = store
        .list_tenants(&PageRequest {
            after: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].created_at, t0());
}

/// A tenant's ceilings are stored at creation, replaced, kept by edits of other fields, and
/// removed; an empty `allowed_scopes` (no scopes at all) is not the same as none (no ceiling).
pub async fn tenant_ceilings_round_trip(store: Arc<dyn Store>) {
    let t = stored_tenant(store.as_ref(), "acme").await;
    assert_eq!(
        (t.allowed_scopes.clone(), t.max_key_rate_limit),
        (None, None)
    );
    let patch = |p: UpdateTenant| {
        let store = store.clone();
        let id = t.id.clone();
        async move {
            let updated = store
                .update_tenant(&id, Box::new(move |t| p.apply(t, at(5))))
                .await
                .expect("update");
            let read = store.get_tenant(&id).await.expect("get").expect("found");
            assert_eq!(read, updated, "read back as written");
            (read.allowed_scopes, read.max_key_rate_limit)
        }
    };
    let set = UpdateTenant {
        allowed_scopes: Some(Some(vec!["invoices:*".to_owned(), "files:read".to_owned()])),
        max_key_rate_limit: Some(Some(super::limit(10, 1, 5).into())),
        ..Default::default()
    };
    let scopes = vec![super::scope("files:read"), super::scope("invoices:*")];
    let max = Some(super::limit(10, 1, 5));
    assert_eq!(patch(set).await, (Some(scopes.clone()), max));
    let rename = UpdateTenant {
        name: Some("Renamed".to_owned()),
        ..Default::default()
    };
    assert_eq!(patch(rename).await, (Some(scopes), max), "kept");
    let empty = UpdateTenant {
        allowed_scopes: Some(Some(vec![])),
        max_key_rate_limit: Some(None),
        ..Default::default()
    };
    assert_eq!(patch(empty).await, (Some(vec![]), None));
    let clear = UpdateTenant {
        allowed_scopes: Some(None),
        ..Default::default()
    };
    assert_eq!(patch(clear).await, (None, None));
}
