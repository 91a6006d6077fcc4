//! Input of the admin API and the CLI, and its validation. Every struct rejects unknown fields.
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use crate::{
    ceiling,
    error::{ValidationError, validate_name},
    ids,
    ip::IpAllowlist,
    key, limits, metadata,
    model::{AdminKey, ApiKey, Tenant},
    ratelimit::{self, RateLimitInput},
    scope,
    tenant::{self, Environment, TenantId, TenantStatus},
};

/// A timestamp in RFC 3339 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub OffsetDateTime);

impl<'de> Deserialize<'de> for Rfc3339 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        time::serde::rfc3339::deserialize(d).map(Rfc3339)
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`) in PATCH bodies.
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Lifetime limits that apply on top of a tenant's own (from the server configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    pub max_live_lifetime_seconds: Option<i64>,
    pub max_test_lifetime_seconds: Option<i64>,
}

impl KeyPolicy {
    /// The effective maximum lifetime of a key of `env` in `tenant`: the smaller of both limits.
    pub fn max_lifetime(&self, tenant: &Tenant, env: Environment) -> Option<i64> {
        let config = match env {
            Environment::Live => self.max_live_lifetime_seconds,
            Environment::Test => self.max_test_lifetime_seconds,
        };
        match (config, tenant.max_key_lifetime_seconds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn validate_lifetime(v: Option<i64>) -> Result<Option<i64>, ValidationError> {
    match v {
        Some(s) if !(60..=limits::MAX_LIFETIME_SECONDS).contains(&s) => {
            Err(ValidationError::InvalidLifetime)
        }
        other => Ok(other),
    }
}

fn validate_external_id(v: Option<String>) -> Result<Option<String>, ValidationError> {
    match v {
        Some(s)
            if s.is_empty()
                || s.chars().count() > limits::MAX_EXTERNAL_ID_LEN
                || s.chars().any(char::is_control) =>
        {
            Err(ValidationError::InvalidExternalId)
        }
        other => Ok(other),
    }
}

/// Checks an expiry against `now` and the maximum lifetime counted from `created_at`; fills in
/// the maximum when none is given and a maximum applies.
fn resolve_expiry(
    requested: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    now: OffsetDateTime,
    max_lifetime: Option<i64>,
) -> Result<Option<OffsetDateTime>, ValidationError> {
    let limit = max_lifetime.map(|s| created_at + Duration::seconds(s));
    match requested {
        None => Ok(limit),
        Some(t) if t <= now => Err(ValidationError::InvalidExpiry("must be in the future")),
        Some(t) if limit.is_some_and(|l| t > l) => Err(ValidationError::InvalidExpiry(
            "beyond the maximum key lifetime of this tenant",
        )),
        Some(t) if t > now + Duration::seconds(limits::MAX_LIFETIME_SECONDS) => {
            Err(ValidationError::InvalidExpiry("more than 10 years ahead"))
        }
        Some(t) => Ok(Some(crate::clock::whole_seconds(t))),
    }
}

/// `POST /v1/tenants`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub key_prefix: Option<String>,
    #[serde(default)]
    pub max_key_lifetime_seconds: Option<i64>,
    /// Limit of all the tenant's keys together.
    #[serde(default)]
    pub rate_limit: Option<RateLimitInput>,
    /// Ceiling of the scopes of the tenant's keys (patterns).
    #[serde(default)]
    pub allowed_scopes: Option<Vec<String>>,
    /// Ceiling of a key's own rate limit.
    #[serde(default)]
    pub max_key_rate_limit: Option<RateLimitInput>,
}

impl CreateTenant {
    pub fn validate(self, now: OffsetDateTime) -> Result<Tenant, ValidationError> {
        Ok(Tenant {
            id: TenantId::parse(&self.id)?,
            name: validate_name(&self.name)?,
            status: TenantStatus::Active,
            key_prefix: match self.key_prefix {
                Some(p) => tenant::validate_key_prefix(&p)?,
                None => key::DEFAULT_TENANT_PREFIX.to_owned(),
            },
            max_key_lifetime_seconds: validate_lifetime(self.max_key_lifetime_seconds)?,
            rate_limit: ratelimit::validate_opt(self.rate_limit)?,
            allowed_scopes: ceiling::validate_allowed_scopes(self.allowed_scopes.as_deref())?,
            max_key_rate_limit: ratelimit::validate_opt(self.max_key_rate_limit)?,
            created_at: now,
            updated_at: now,
        })
    }
}

/// `PATCH /v1/tenants/{tenant}`. The key prefix cannot change (keys in use carry it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<TenantStatus>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_key_lifetime_seconds: Option<Option<i64>>,
    /// Absent: unchanged; `null`: removed; an object: set.
    #[serde(default, deserialize_with = "nullable")]
    pub rate_limit: Option<Option<RateLimitInput>>,
    /// Absent: unchanged; `null`: no ceiling; a list: set.
    #[serde(default, deserialize_with = "nullable")]
    pub allowed_scopes: Option<Option<Vec<String>>>,
    /// Absent: unchanged; `null`: no ceiling; an object: set.
    #[serde(default, deserialize_with = "nullable")]
    pub max_key_rate_limit: Option<Option<RateLimitInput>>,
}

impl UpdateTenant {
    /// Does this change touch the vendor's policy over the tenant (its status, key lifetime,
    /// rate limit or ceilings)? Then only a root admin key may make it: a key bound to the
    /// tenant could otherwise lift its own suspension or raise its own ceilings.
    pub fn needs_root(&self) -> bool {
        self.status.is_some()
            || self.max_key_lifetime_seconds.is_some()
            || self.rate_limit.is_some()
            || self.allowed_scopes.is_some()
            || self.max_key_rate_limit.is_some()
    }

    pub fn apply(self, t: &mut Tenant, now: OffsetDateTime) -> Result<(), ValidationError> {
        if let Some(n) = self.name {
            t.name = validate_name(&n)?;
        }
        if let Some(s) = self.status {
            t.status = s;
        }
        if let Some(l) = self.max_key_lifetime_seconds {
            t.max_key_lifetime_seconds = validate_lifetime(l)?;
        }
        if let Some(r) = self.rate_limit {
            t.rate_limit = ratelimit::validate_opt(r)?;
        }
        if let Some(a) = self.allowed_scopes {
            t.allowed_scopes = ceiling::validate_allowed_scopes(a.as_deref())?;
        }
        if let Some(m) = self.max_key_rate_limit {
            t.max_key_rate_limit = ratelimit::validate_opt(m)?;
        }
        t.updated_at = now;
        Ok(())
    }
}

/// `POST /v1/tenants/{tenant}/keys`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub environment: Environment,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<Rfc3339>,
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub external_id: Option<String>,
    /// The key's own limit (applied with the route's policy, the stricter wins); default the
    /// tenant's `max_key_rate_limit`, if any.
    #[serde(default)]
    pub rate_limit: Option<RateLimitInput>,
}

/// A key just created: the record, and its secret (to be shown once, then dropped).
#[derive(Debug)]
pub struct NewKey {
    pub key: ApiKey,
    pub secret: SecretString,
}

impl CreateKey {
    /// Validates the input (the tenant's ceilings included) and generates the key's id and
    /// secret.
    pub fn create(
        self,
        tenant: &Tenant,
        policy: &KeyPolicy,
        now: OffsetDateTime,
    ) -> Result<NewKey, ValidationError> {
        let name = validate_name(&self.name)?;
        let scopes = scope::parse_scopes(&self.scopes)?;
        let ip_allowlist = IpAllowlist::parse(&self.ip_allowlist)?;
        let metadata = self.metadata.unwrap_or_default();
        metadata::validate(&metadata)?;
        let external_id = validate_external_id(self.external_id)?;
        let rate_limit = ceiling::key_rate_limit(tenant, ratelimit::validate_opt(self.rate_limit)?);
        let expires_at = resolve_expiry(
            self.expires_at.map(|t| t.0),
            now,
            now,
            policy.max_lifetime(tenant, self.environment),
        )?;
        let secret = key::generate(&key::tenant_key_prefix(
            &tenant.key_prefix,
            self.environment,
        ));
        let hint = key::hint(secret.expose_secret()).unwrap_or_default();
        let new = NewKey {
            key: ApiKey {
                id: ids::new_id("key"),
                tenant_id: tenant.id.clone(),
                environment: self.environment,
                name,
                scopes,
                hint,
                ip_allowlist,
                metadata,
                external_id,
                rate_limit,
                created_at: now,
                updated_at: now,
                expires_at,
                revoked_at: None,
                last_used_at: None,
            },
            secret,
        };
        ceiling::check_key(tenant, &new.key)?;
        Ok(new)
    }
}

/// `PATCH /v1/tenants/{tenant}/keys/{key_id}`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub expires_at: Option<Option<Rfc3339>>,
    #[serde(default)]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "nullable")]
    pub external_id: Option<Option<String>>,
    /// Absent: unchanged; `null`: removed; an object: set.
    #[serde(default, deserialize_with = "nullable")]
    pub rate_limit: Option<Option<RateLimitInput>>,
}

impl UpdateKey {
    /// Applies the change; the key must be within its tenant's ceilings afterwards.
    pub fn apply(
        self,
        k: &mut ApiKey,
        tenant: &Tenant,
        policy: &KeyPolicy,
        now: OffsetDateTime,
    ) -> Result<(), ValidationError> {
        if let Some(n) = self.name {
            k.name = validate_name(&n)?;
        }
        if let Some(s) = self.scopes {
            k.scopes = scope::parse_scopes(&s)?;
        }
        if let Some(e) = self.expires_at {
            let max = policy.max_lifetime(tenant, k.environment);
            if e.is_none() && max.is_some() {
                return Err(ValidationError::InvalidExpiry(
                    "a maximum key lifetime applies; the expiry cannot be removed",
                ));
            }
            k.expires_at = resolve_expiry(e.map(|t| t.0), k.created_at, now, max)?;
        }
        if let Some(l) = self.ip_allowlist {
            k.ip_allowlist = IpAllowlist::parse(&l)?;
        }
        if let Some(m) = self.metadata {
            metadata::validate(&m)?;
            k.metadata = m;
        }
        if let Some(x) = self.external_id {
            k.external_id = validate_external_id(x)?;
        }
        if let Some(r) = self.rate_limit {
            k.rate_limit = ratelimit::validate_opt(r)?;
        }
        ceiling::check_key(tenant, k)?;
        k.updated_at = now;
        Ok(())
    }
}

/// `POST /v1/tenants/{tenant}/keys/{key_id}/roll`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollKey {
    #[serde(default)]
    pub grace_seconds: Option<i64>,
}

impl RollKey {
    /// When the old secret stops working (`now` for a grace of 0).
    pub fn old_secret_expiry(
        &self,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, ValidationError> {
        let g = self.grace_seconds.unwrap_or(limits::DEFAULT_GRACE_SECONDS);
        if !(0..=limits::MAX_GRACE_SECONDS).contains(&g) {
            return Err(ValidationError::InvalidGracePeriod);
        }
        Ok(now + Duration::seconds(g))
    }
}

/// A new secret for an existing key, with its hint.
pub fn roll_secret(tenant: &Tenant, key: &ApiKey) -> (SecretString, String) {
    let secret = key::generate(&key::tenant_key_prefix(&tenant.key_prefix, key.environment));
    let hint = key::hint(secret.expose_secret()).unwrap_or_default();
    (secret, hint)
}

/// Creation of an admin key (operator CLI, first start, `POST /v1/admin-keys`).
#[derive(Debug, Clone)]
pub struct CreateAdminKey {
    pub name: String,
    pub tenant_id: Option<String>,
    pub scopes: Vec<String>,
}

/// An admin key just created, and its secret.
#[derive(Debug)]
pub struct NewAdminKey {
    pub key: AdminKey,
    pub secret: SecretString,
}

impl CreateAdminKey {
    pub fn create(self, now: OffsetDateTime) -> Result<NewAdminKey, ValidationError> {
        let scopes = if self.scopes.is_empty() {
            scope::parse_admin_scopes(scope::ADMIN_SCOPES)?
        } else {
            scope::parse_admin_scopes(&self.scopes)?
        };
        let secret = key::generate(key::ADMIN_PREFIX);
        let hint = key::hint(secret.expose_secret()).unwrap_or_default();
        Ok(NewAdminKey {
            key: AdminKey {
                id: ids::new_id("adm"),
                name: validate_name(&self.name)?,
                tenant_id: self.tenant_id.as_deref().map(TenantId::parse).transpose()?,
                scopes,
                hint,
                created_at: now,
                revoked_at: None,
                last_used_at: None,
            },
            secret,
        })
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
