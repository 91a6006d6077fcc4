//! Operations outside the [`portcullis_store::Store`] trait: bulk seeding for benchmarks, and a
//! dump of every stored value for tests.
use std::fmt::Write as _;

use portcullis_core::{hash::KeyHash, model::ApiKey};
use portcullis_store::Result;
use sqlx::{QueryBuilder, Row, Sqlite, TypeInfo, ValueRef};

use crate::{SqliteStore, db, rows::KeyValues};

/// Keys per multi-row INSERT (15 parameters each, well below SQLite's 32,766).
const KEYS_PER_STATEMENT: usize = 500;

impl SqliteStore {
    /// Inserts many keys with their hashes in one transaction: multi-row INSERTs of
    /// 500 keys, each a statement prepared once and reused. For seeding benchmarks; the tenants
    /// must exist (a missing one fails the whole batch with `NotFound`, a taken id or hash with
    /// `Conflict`, and nothing is written).
    pub async fn bulk_insert_keys(&self, keys: &[(ApiKey, KeyHash)]) -> Result<()> {
        let mut tx = self.begin().await?;
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let values = chunk
                .iter()
                .map(|(k, _)| KeyValues::of(k))
                .collect::<Result<Vec<_>>>()?;
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO api_keys (id, tenant_id, environment, name, scopes, hint, \
                 ip_allowlist, metadata, external_id, created_at, updated_at, expires_at, \
                 revoked_at, last_used_at, rate_limit) ",
            );
            q.push_values(chunk.iter().zip(values), |mut b, ((k, _), v)| {
                b.push_bind(k.id.as_str())
                    .push_bind(k.tenant_id.as_str())
                    .push_bind(k.environment.as_str())
                    .push_bind(k.name.as_str())
                    .push_bind(v.scopes)
                    .push_bind(k.hint.as_str())
                    .push_bind(v.ip_allowlist)
                    .push_bind(v.metadata)
                    .push_bind(k.external_id.as_deref())
                    .push_bind(v.created_at)
                    .push_bind(v.updated_at)
                    .push_bind(v.expires_at)
                    .push_bind(v.revoked_at)
                    .push_bind(v.last_used_at)
                    .push_bind(v.rate_limit);
            });
            q.build().execute(&mut *tx).await.map_err(db)?;

            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO key_secrets (hash, key_id, tenant_id, expires_at) ",
            );
            q.push_values(chunk, |mut b, (k, h)| {
                b.push_bind(&h.0[..])
                    .push_bind(k.id.as_str())
                    .push_bind(k.tenant_id.as_str())
                    .push_bind(None::<i64>);
            });
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// Every row of every table as text, one line per row: `table: column=value, …`. TEXT and
    /// numbers as they are, NULL as `NULL`, a BLOB both as hex and as lossy UTF-8. For tests
    /// that prove what is (not) stored.
    pub async fn dump_all_rows(&self) -> Result<String> {
        let mut conn = self.read.acquire().await.map_err(db)?;
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
        let mut out = String::new();
        for table in tables {
            let sql = format!("SELECT * FROM \"{}\"", table.replace('"', "\"\""));
            let rows = sqlx::query(&sql).fetch_all(&mut *conn).await.map_err(db)?;
            for row in rows {
                let _ = write!(out, "{table}:");
                for (i, col) in row.columns().iter().enumerate() {
                    let name = sqlx::Column::name(col);
                    let raw = row.try_get_raw(i).map_err(db)?;
                    let value = if raw.is_null() {
                        "NULL".to_owned()
                    } else {
                        match raw.type_info().name() {
                            "INTEGER" => {
                                row.try_get_unchecked::<i64, _>(i).map_err(db)?.to_string()
                            }
                            "REAL" => row.try_get_unchecked::<f64, _>(i).map_err(db)?.to_string(),
                            "BLOB" => {
                                let b: Vec<u8> = row.try_get_unchecked(i).map_err(db)?;
                                format!(
                                    "x'{}' ({:?})",
                                    hex::encode(&b),
                                    String::from_utf8_lossy(&b)
                                )
                            }
                            _ => row.try_get_unchecked::<String, _>(i).map_err(db)?,
                        }
                    };
                    let _ = write!(out, " {name}={value}");
                }
                out.push('\n');
            }
        }
        Ok(out)
    }
}
