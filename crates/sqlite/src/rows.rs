//! Rows ↔ records: the conversions of timestamps, JSON and hashes (the column lists are the
//! `*_columns!` macros in the crate root).
use portcullis_core::{
    OffsetDateTime,
    clock::whole_seconds,
    hash::KeyHash,
    ip::IpAllowlist,
    model::{AdminKey, ApiKey, Tenant},
    ratelimit::RateLimit,
    scope::Scope,
    tenant::{Environment, TenantId, TenantStatus},
};
use portcullis_store::{Result, StoreError};
use serde_json::{Map, Value};
use sqlx::{Row, sqlite::SqliteRow};

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("corrupt row: {what}"))
}

/// A timestamp as stored: unix seconds.
pub fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// An optional timestamp as stored.
pub fn opt_ts(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(ts)
}

fn from_ts(s: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(s).map_err(|_| corrupt("timestamp out of range"))
}

fn from_opt_ts(s: Option<i64>) -> Result<Option<OffsetDateTime>> {
    s.map(from_ts).transpose()
}

/// JSON text of a value (scopes, allowlists, metadata).
pub fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encode json: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|_| corrupt(what))
}

/// A rate limit as stored: JSON TEXT, or NULL for none.
pub fn rate_limit(limit: Option<&RateLimit>) -> Result<Option<String>> {
    limit.map(json).transpose()
}

/// Reads an optional rate limit (JSON TEXT or NULL) at column `i`; an invalid one is corrupt.
pub fn rate_limit_at(row: &SqliteRow, i: usize) -> Result<Option<RateLimit>> {
    get::<Option<&str>>(row, i)?
        .map(|text| from_json(text, "rate_limit"))
        .transpose()
}

/// A hash read back from a BLOB column.
pub fn hash(bytes: &[u8]) -> Result<KeyHash> {
    KeyHash::from_slice(bytes).ok_or_else(|| corrupt("hash is not 32 bytes"))
}

fn get<'r, T>(row: &'r SqliteRow, i: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(i)
        .map_err(|e| StoreError::Backend(format!("read column {i}: {e}")))
}

fn tenant_id(s: &str) -> Result<TenantId> {
    TenantId::parse(s).map_err(|_| corrupt("tenant id"))
}

/// Reads a tenant from `tenant_columns!()`.
pub fn tenant(row: &SqliteRow) -> Result<Tenant> {
    Ok(Tenant {
        id: tenant_id(get(row, 0)?)?,
        name: get(row, 1)?,
        status: status(get(row, 2)?)?,
        key_prefix: get(row, 3)?,
        max_key_lifetime_seconds: get(row, 4)?,
        created_at: from_ts(get(row, 5)?)?,
        updated_at: from_ts(get(row, 6)?)?,
        rate_limit: rate_limit_at(row, 7)?,
        allowed_scopes: get::<Option<&str>>(row, 8)?
            .map(|text| from_json::<Vec<Scope>>(text, "allowed_scopes"))
            .transpose()?,
        max_key_rate_limit: rate_limit_at(row, 9)?,
    })
}

/// Reads a tenant status.
pub fn status(s: &str) -> Result<TenantStatus> {
    TenantStatus::parse(s).ok_or_else(|| corrupt("tenant status"))
}

/// How many columns `key_columns!()` has; the extra columns of a query start here.
pub const KEY_COLUMNS: usize = 15;

/// Reads a key from `key_columns!()`.
pub fn api_key(row: &SqliteRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: get(row, 0)?,
        tenant_id: tenant_id(get(row, 1)?)?,
        environment: Environment::parse(get(row, 2)?).ok_or_else(|| corrupt("environment"))?,
        name: get(row, 3)?,
        scopes: from_json::<Vec<Scope>>(get(row, 4)?, "scopes")?,
        hint: get(row, 5)?,
        ip_allowlist: from_json::<IpAllowlist>(get(row, 6)?, "ip_allowlist")?,
        metadata: from_json::<Map<String, Value>>(get(row, 7)?, "metadata")?,
        external_id: get(row, 8)?,
        rate_limit: rate_limit_at(row, 14)?,
        created_at: from_ts(get(row, 9)?)?,
        updated_at: from_ts(get(row, 10)?)?,
        expires_at: from_opt_ts(get(row, 11)?)?,
        revoked_at: from_opt_ts(get(row, 12)?)?,
        last_used_at: from_opt_ts(get(row, 13)?)?,
    })
}

/// Reads an admin key from `admin_columns!()`.
pub fn admin_key(row: &SqliteRow) -> Result<AdminKey> {
    Ok(AdminKey {
        id: get(row, 0)?,
        name: get(row, 1)?,
        tenant_id: get::<Option<&str>>(row, 2)?.map(tenant_id).transpose()?,
        scopes: from_json::<Vec<Scope>>(get(row, 3)?, "scopes")?,
        hint: get(row, 4)?,
        created_at: from_ts(get(row, 5)?)?,
        revoked_at: from_opt_ts(get(row, 6)?)?,
        last_used_at: from_opt_ts(get(row, 7)?)?,
    })
}

/// Truncates every timestamp of a key to whole seconds, the precision stored.
pub fn normalize_key(k: &mut ApiKey) {
    for t in [&mut k.created_at, &mut k.updated_at] {
        *t = whole_seconds(*t);
    }
    for t in [&mut k.expires_at, &mut k.revoked_at, &mut k.last_used_at] {
        *t = t.map(whole_seconds);
    }
}

/// Truncates every timestamp of a tenant to whole seconds, the precision stored.
pub fn normalize_tenant(t: &mut Tenant) {
    t.created_at = whole_seconds(t.created_at);
    t.updated_at = whole_seconds(t.updated_at);
}

/// Reads an optional timestamp column at `i`.
pub fn opt_ts_at(row: &SqliteRow, i: usize) -> Result<Option<OffsetDateTime>> {
    from_opt_ts(get(row, i)?)
}

/// The encoded (non-text) column values of a key.
#[derive(Debug)]
pub struct KeyValues {
    pub scopes: String,
    pub ip_allowlist: String,
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub rate_limit: Option<String>,
}

impl KeyValues {
    /// Encodes the non-text fields of `k`.
    pub fn of(k: &ApiKey) -> Result<Self> {
        Ok(Self {
            scopes: json(&k.scopes)?,
            ip_allowlist: json(&k.ip_allowlist)?,
            metadata: json(&k.metadata)?,
            created_at: ts(k.created_at),
            updated_at: ts(k.updated_at),
            expires_at: opt_ts(k.expires_at),
            revoked_at: opt_ts(k.revoked_at),
            last_used_at: opt_ts(k.last_used_at),
            rate_limit: rate_limit(k.rate_limit.as_ref())?,
        })
    }
}
