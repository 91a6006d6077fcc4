//! Rate limits in SQLite beyond the conformance suite: bulk seeding, the stored form, and a
//! database of schema version 1 upgraded in place.
use std::path::Path;

use portcullis_core::tenant::Environment;
use portcullis_sqlite::SqliteStore;
use portcullis_store::{
    Store, StoreError,
    conformance::{key, limit, stored_tenant, tid},
};
use sqlx::{
    Connection, SqliteConnection,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

#[tokio::test]
async fn bulk_insert_keeps_rate_limits() {
    let store = SqliteStore::memory().await.expect("store");
    let mut t = stored_tenant(&store, "acme").await;
    let keys: Vec<_> = (0..600u32)
        .map(|i| {
            let (mut k, h) = key(&t, &format!("k{i}"), Environment::Live);
            k.rate_limit = (i % 2 == 0).then(|| limit(i + 1, 60, 2 * i + 1));
            (k, h)
        })
        .collect();
    store.bulk_insert_keys(&keys).await.expect("bulk insert");
    for (k, h) in [&keys[0], &keys[1], &keys[498], &keys[599]] {
        let m = store.find_key(h).await.expect("find").expect("found");
        assert_eq!(&m.key, k);
        assert_eq!(m.tenant_rate_limit, None);
    }
    assert_eq!(keys[498].0.rate_limit, Some(limit(499, 60, 997)));

    t = store
        .update_tenant(
            &t.id,
            Box::new(|t| {
                t.rate_limit = Some(limit(9, 3, 27));
                Ok(())
            }),
        )
        .await
        .expect("update tenant");
    let m = store
        .find_key(&keys[1].1)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(m.tenant_rate_limit, t.rate_limit);

    // The stored form: JSON text with all three fields, NULL for none.
    let dump = store.dump_all_rows().await.expect("dump");
    assert!(
        dump.contains(r#"rate_limit={"requests":9,"per_seconds":3,"burst":27}"#),
        "tenant's limit in the dump"
    );
    assert!(dump.contains(r#"rate_limit={"requests":1,"per_seconds":60,"burst":1}"#));
    assert!(dump.contains("rate_limit=NULL"));
}

/// The first migration only, as a database of version 1 had it.
async fn create_v1(path: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/0001_init.sql"),
        dir.path().join("0001_init.sql"),
    )
    .expect("copy migration");
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("connect");
    Migrator::new(dir.path())
        .await
        .expect("migrator")
        .run(&pool)
        .await
        .expect("migrate to v1");
    sqlx::query(
        "INSERT INTO tenants (id, name, status, key_prefix, created_at, updated_at) \
         VALUES ('acme', 'Acme', 'active', 'sk', 1772366400, 1772366400)",
    )
    .execute(&pool)
    .await
    .expect("tenant");
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, environment, name, scopes, hint, ip_allowlist, \
         metadata, created_at, updated_at) VALUES ('key_01jf0000000000000000000000', 'acme', \
         'live', 'old', '[]', 'sk_live_…abcd', '[]', '{}', 1772366400, 1772366400)",
    )
    .execute(&pool)
    .await
    .expect("key");
    pool.close().await;
}

#[tokio::test]
async fn version_1_database_is_upgraded_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.db");
    create_v1(&path).await;

    let store = SqliteStore::open(&path).await.expect("open upgrades");
    let acme = tid("acme");
    let t = store.get_tenant(&acme).await.expect("get").expect("kept");
    assert_eq!((t.name.as_str(), t.rate_limit), ("Acme", None));
    let id = "key_01jf0000000000000000000000";
    let k = store.get_key(&acme, id).await.expect("get").expect("kept");
    assert_eq!((k.name.as_str(), k.rate_limit), ("old", None));
    let k = store
        .update_key(
            &acme,
            id,
            Box::new(|k| {
                k.rate_limit = Some(limit(10, 1, 10));
                Ok(())
            }),
        )
        .await
        .expect("the new column is writable");
    assert_eq!(k.rate_limit, Some(limit(10, 1, 10)));
    store.close().await;

    // A limit out of range in the file is reported as a backend error, not used.
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
        .await
        .expect("connect");
    sqlx::query(r#"UPDATE api_keys SET rate_limit = '{"requests":0,"per_seconds":1,"burst":1}'"#)
        .execute(&mut conn)
        .await
        .expect("corrupt");
    let not_json = sqlx::query("UPDATE tenants SET rate_limit = 'nope'")
        .execute(&mut conn)
        .await;
    assert!(not_json.is_err(), "the column only takes JSON");
    conn.close().await.expect("close");
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert!(matches!(
        store.get_key(&acme, id).await,
        Err(StoreError::Backend(_))
    ));
    store.close().await;
}
