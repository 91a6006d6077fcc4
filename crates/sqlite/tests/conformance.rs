//! The backend conformance suite against SQLite (in memory and on a file), and tests of what
//! only SQLite has: reopening a file, two stores on one file, bulk seeding, the stored bytes.
use std::{path::PathBuf, sync::Arc};

use portcullis_core::{
    ExposeSecret,
    hash::Pepper,
    ids,
    request::{CreateAdminKey, CreateKey, KeyPolicy},
    tenant::Environment,
};
use portcullis_sqlite::SqliteStore;
use portcullis_store::{
    KeyFilter, PageRequest, Store, StoreError,
    conformance::{at, key, new_hash, stored_key, stored_tenant, tenant},
};

portcullis_store::conformance_tests!(in_memory, async {
    Arc::new(SqliteStore::memory().await.expect("memory store")) as Arc<dyn Store>
});

portcullis_store::conformance_tests!(on_file, async {
    Arc::new(SqliteStore::open(&temp_db()).await.expect("file store")) as Arc<dyn Store>
});

/// A fresh database path under the target directory (kept for inspection after a failure).
fn temp_db() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portcullis-sqlite-conformance");
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Databases of earlier runs go first.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3_600);
        for e in entries.flatten() {
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < old);
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    dir.join(format!("{}.db", ids::new_id("db")))
}

#[tokio::test]
async fn file_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let t = stored_tenant(&store, "acme").await;
    let (k, h) = stored_key(&store, &t, "a", Environment::Live).await;
    let rolled_to = new_hash();
    let rolled = store
        .roll_key(&t.id, &k.id, &rolled_to, "hint", at(3_600), at(10))
        .await
        .expect("roll");
    store.close().await;

    let store = SqliteStore::open(&path)
        .await
        .expect("reopen (migrations already applied)");
    assert_eq!(store.get_tenant(&t.id).await.expect("get"), Some(t.clone()));
    assert_eq!(
        store.get_key(&t.id, &k.id).await.expect("get"),
        Some(rolled.key.clone())
    );
    let old = store.find_key(&h).await.expect("find").expect("old secret");
    assert_eq!(old.secret_expires_at, Some(at(3_600)));
    let new = store
        .find_key(&rolled_to)
        .await
        .expect("find")
        .expect("new secret");
    assert_eq!(new.key, rolled.key);
    store.close().await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "database readable by its owner only: {mode:o}"
        );
    }
}

/// The CLI may write to the database while the server runs: two stores on one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_both_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.db");
    let server = Arc::new(SqliteStore::open(&path).await.expect("open server"));
    let cli = Arc::new(SqliteStore::open(&path).await.expect("open cli"));
    let t = stored_tenant(server.as_ref(), "acme").await;
    let (k, _) = stored_key(server.as_ref(), &t, "shared", Environment::Live).await;

    let mut tasks = tokio::task::JoinSet::new();
    for (n, store) in [server.clone(), cli.clone()].into_iter().enumerate() {
        let (t, id) = (t.clone(), k.id.clone());
        tasks.spawn(async move {
            for i in 0..25 {
                let (key, hash) = key(&t, &format!("s{n}-{i}"), Environment::Test);
                store.create_key(&key, &hash).await?;
                store
                    .update_key(
                        &t.id,
                        &id,
                        Box::new(move |k| {
                            k.metadata.insert(format!("s{n}-{i}"), i.into());
                            Ok(())
                        }),
                    )
                    .await?;
                store.touch_keys(&[(id.clone(), at(i))]).await?;
            }
            Ok::<_, StoreError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("writes from both stores succeed");
    }
    for store in [&server, &cli] {
        let key = store
            .get_key(&t.id, &k.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(key.metadata.len(), 50, "every edit of both stores landed");
        let all = store
            .list_keys(
                &t.id,
                &KeyFilter::default(),
                &PageRequest {
                    after: None,
                    limit: 1000,
                },
            )
            .await
            .expect("list");
        assert_eq!(all.items.len(), 51);
    }
}

#[tokio::test]
async fn bulk_insert_keys_resolve() {
    let store = SqliteStore::memory().await.expect("store");
    let t = stored_tenant(&store, "acme").await;
    let keys: Vec<_> = (0..1_234)
        .map(|i| key(&t, &format!("k{i}"), Environment::Live))
        .collect();
    store.bulk_insert_keys(&keys).await.expect("bulk insert");
    for (k, h) in [&keys[0], &keys[499], &keys[500], &keys[1_233]] {
        let m = store.find_key(h).await.expect("find").expect("found");
        assert_eq!(&m.key, k);
        assert_eq!(
            store.key_hashes(&t.id, &k.id).await.expect("hashes"),
            vec![*h]
        );
    }
    let page = store
        .list_keys(
            &t.id,
            &KeyFilter::default(),
            &PageRequest {
                after: None,
                limit: 1000,
            },
        )
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1000);
    assert!(page.next_cursor.is_some());

    // A batch with a missing tenant or a taken hash is refused whole.
    let ghost = tenant("ghost");
    let mut bad = vec![
        key(&t, "fine", Environment::Live),
        key(&ghost, "orphan", Environment::Live),
    ];
    assert!(matches!(
        store.bulk_insert_keys(&bad).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.find_key(&bad[0].1).await.expect("find"),
        None,
        "nothing written"
    );
    bad[1] = (key(&t, "dup", Environment::Live).0, keys[7].1);
    assert!(matches!(
        store.bulk_insert_keys(&bad).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.find_key(&bad[0].1).await.expect("find"),
        None,
        "nothing written"
    );
}

/// No table holds a key's secret (or its random part), whatever was done with the key.
#[tokio::test]
async fn no_secret_is_ever_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let (pepper, _) = Pepper::generate();
    let t = stored_tenant(&store, "acme").await;
    let mut secrets = Vec::new();
    let new = CreateKey {
        name: "ci".into(),
        environment: Environment::Live,
        scopes: vec!["invoices:read".into()],
        expires_at: None,
        ip_allowlist: vec!["10.0.0.0/8".into()],
        metadata: None,
        external_id: Some("cust-1".into()),
        rate_limit: None,
    }
    .create(&t, &KeyPolicy::default(), at(0))
    .expect("valid");
    store
        .create_key(&new.key, &pepper.hash(new.secret.expose_secret()))
        .await
        .expect("create");
    secrets.push(new.secret.expose_secret().to_owned());
    let (rolled, hint) = portcullis_core::request::roll_secret(&t, &new.key);
    store
        .roll_key(
            &t.id,
            &new.key.id,
            &pepper.hash(rolled.expose_secret()),
            &hint,
            at(60),
            at(1),
        )
        .await
        .expect("roll");
    secrets.push(rolled.expose_secret().to_owned());
    let admin = CreateAdminKey {
        name: "root".into(),
        tenant_id: None,
        scopes: vec![],
    }
    .create(at(0))
    .expect("valid");
    store
        .create_admin_key(&admin.key, &pepper.hash(admin.secret.expose_secret()))
        .await
        .expect("create admin");
    secrets.push(admin.secret.expose_secret().to_owned());
    store
        .touch_keys(&[(new.key.id.clone(), at(5))])
        .await
        .expect("touch");

    let dump = store.dump_all_rows().await.expect("dump");
    assert!(
        dump.contains("api_keys:") && dump.contains("key_secrets:") && dump.contains("admin_keys:")
    );
    assert!(
        dump.contains(&new.key.id),
        "the dump shows the rows: {dump}"
    );
    for secret in &secrets {
        // The random body of a key: what follows its prefix, without the 6 checksum characters.
        let body = &secret[secret.len() - 38..secret.len() - 6];
        for needle in [
            secret.as_str(),
            body,
            &hex::encode(secret),
            &hex::encode(body),
        ] {
            assert!(!dump.contains(needle), "a secret is stored:\n{dump}");
        }
    }
    store.close().await;
    // Nor is it anywhere in the files (database, WAL), free pages included.
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        let bytes = std::fs::read(entry.path()).expect("read");
        for secret in &secrets {
            let body = &secret.as_bytes()[secret.len() - 38..secret.len() - 6];
            assert!(
                !bytes.windows(body.len()).any(|w| w == body),
                "{} holds a secret",
                entry.path().display()
            );
        }
    }
}

/// Readers and the writer share one in-memory database (shared cache, table locks): reads
/// during writes wait instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_reads_during_writes() {
    let store = Arc::new(SqliteStore::memory().await.expect("store"));
    let t = stored_tenant(store.as_ref(), "acme").await;
    let (k, h) = stored_key(store.as_ref(), &t, "busy", Environment::Live).await;
    let mut tasks = tokio::task::JoinSet::new();
    let (s, tenant, id) = (store.clone(), t.clone(), k.id.clone());
    tasks.spawn(async move {
        for i in 0..150 {
            let (key, hash) = key(&tenant, &format!("k{i}"), Environment::Live);
            s.create_key(&key, &hash).await?;
            s.update_key(
                &tenant.id,
                &id,
                Box::new(move |k| {
                    k.metadata.insert("n".into(), i.into());
                    Ok(())
                }),
            )
            .await?;
        }
        Ok::<_, StoreError>(())
    });
    for _ in 0..3 {
        let (s, tenant) = (store.clone(), t.id.clone());
        tasks.spawn(async move {
            for _ in 0..150 {
                s.find_key(&h).await?.ok_or(StoreError::NotFound)?;
                s.list_keys(
                    &tenant,
                    &KeyFilter::default(),
                    &PageRequest {
                        after: None,
                        limit: 50,
                    },
                )
                .await?;
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("no read or write fails");
    }
}
