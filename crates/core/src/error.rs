//! Validation errors with stable codes. The codes are listed in `docs/errors.md`.
use crate::limits;

/// Why input was rejected. Messages never contain secrets or internal detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("tenant id must be 3 to 40 characters of a-z, 0-9 and '-'")]
    InvalidTenantId,
    #[error("key prefix must be 2 to 16 characters of a-z and 0-9, starting with a letter")]
    InvalidKeyPrefix,
    #[error("scope #{index} is not of the form resource:action (a-z 0-9 _ . - or '*' per segment)")]
    InvalidScope { index: usize },
    #[error("too many scopes (at most {})", limits::MAX_SCOPES)]
    TooManyScopes,
    #[error("ip_allowlist entry #{index} is not an IPv4/IPv6 address or CIDR")]
    InvalidCidr { index: usize },
    #[error("too many ip_allowlist entries (at most {})", limits::MAX_CIDRS)]
    TooManyCidrs,
    #[error(
        "name must be 1 to {} characters without control characters",
        limits::MAX_NAME_LEN
    )]
    InvalidName,
    #[error(
        "external_id must be 1 to {} printable characters",
        limits::MAX_EXTERNAL_ID_LEN
    )]
    InvalidExternalId,
    #[error("metadata: {0}")]
    InvalidMetadata(&'static str),
    #[error("expiry: {0}")]
    InvalidExpiry(&'static str),
    #[error("grace_seconds must be between 0 and {}", limits::MAX_GRACE_SECONDS)]
    InvalidGracePeriod,
    #[error(
        "max_key_lifetime_seconds must be between 60 and {}",
        limits::MAX_LIFETIME_SECONDS
    )]
    InvalidLifetime,
    #[error("admin scope #{index} is not a known admin scope")]
    InvalidAdminScope { index: usize },
    #[error("rate_limit: {0}")]
    InvalidRateLimit(&'static str),
    /// A key's scope that the tenant's `allowed_scopes` do not contain.
    #[error("scope #{index} is not within the tenant's allowed_scopes")]
    ScopeNotAllowed { index: usize },
    /// A key's own limit that allows more than the tenant's `max_key_rate_limit`.
    #[error("rate_limit: {0}")]
    RateLimitAboveCeiling(&'static str),
}

impl ValidationError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidTenantId => "invalid_tenant_id",
            Self::InvalidKeyPrefix => "invalid_key_prefix",
            Self::InvalidScope { .. } => "invalid_scope",
            Self::TooManyScopes => "too_many_scopes",
            Self::InvalidCidr { .. } => "invalid_cidr",
            Self::TooManyCidrs => "too_many_cidrs",
            Self::InvalidName => "invalid_name",
            Self::InvalidExternalId => "invalid_external_id",
            Self::InvalidMetadata(_) => "invalid_metadata",
            Self::InvalidExpiry(_) => "invalid_expiry",
            Self::InvalidGracePeriod => "invalid_grace_period",
            Self::InvalidLifetime => "invalid_lifetime",
            Self::InvalidAdminScope { .. } => "invalid_admin_scope",
            Self::InvalidRateLimit(_) => "invalid_rate_limit",
            Self::ScopeNotAllowed { .. } => "scope_not_allowed",
            Self::RateLimitAboveCeiling(_) => "rate_limit_above_ceiling",
        }
    }

    /// Is this a refusal by a ceiling the vendor set (HTTP 403), rather than malformed input
    /// (HTTP 400)?
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Self::ScopeNotAllowed { .. } | Self::RateLimitAboveCeiling(_)
        )
    }
}

/// A name of a key, tenant or admin key: trimmed, non-empty, bounded, no control characters.
pub fn validate_name(name: &str) -> Result<String, ValidationError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > limits::MAX_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(ValidationError::InvalidName);
    }
    Ok(name.to_owned())
}
