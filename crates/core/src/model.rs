//! The records portcullis keeps. None of them holds a secret: keys are stored as hashes elsewhere.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::{
    ip::IpAllowlist,
    ratelimit::RateLimit,
    scope::Scope,
    tenant::{Environment, TenantId, TenantStatus},
};

/// A tenant: one firm, customer of the vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub status: TenantStatus,
    /// Keys of this tenant look like `{key_prefix}_live_…` / `{key_prefix}_test_…`.
    pub key_prefix: String,
    /// Longest lifetime of a key of this tenant, if enforced.
    pub max_key_lifetime_seconds: Option<i64>,
    /// Limit of the requests of all the tenant's keys together, if any (set by a root admin).
    pub rate_limit: Option<RateLimit>,
    /// Ceiling of the scopes of the tenant's keys (set by a root admin): every scope of a key
    /// must be within one of these patterns. `None`: no ceiling; empty: keys get no scopes.
    #[serde(default)]
    pub allowed_scopes: Option<Vec<Scope>>,
    /// Ceiling of a key's own rate limit (set by a root admin); `None`: no ceiling.
    #[serde(default)]
    pub max_key_rate_limit: Option<RateLimit>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// An API key of a tenant (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: TenantId,
    pub environment: Environment,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Prefix and last four characters of the current secret; safe to display.
    pub hint: String,
    pub ip_allowlist: IpAllowlist,
    pub metadata: Map<String, Value>,
    pub external_id: Option<String>,
    /// The key's own limit. The gateway applies it together with the route's rate-limit policy
    /// (the stricter wins), so it can only tighten the policy.
    pub rate_limit: Option<RateLimit>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Updated in batches, with a granularity of about a minute.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// An admin key: global (root, `tenant_id` = None) or bound to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminKey {
    pub id: String,
    pub name: String,
    pub tenant_id: Option<TenantId>,
    pub scopes: Vec<Scope>,
    pub hint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

impl AdminKey {
    /// Can this admin key act on `tenant`?
    pub fn can_access(&self, tenant: &TenantId) -> bool {
        self.tenant_id.as_ref().is_none_or(|t| t == tenant)
    }
}
