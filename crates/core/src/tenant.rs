//! Tenants (the vendor's customers, one firm each) and environments.
use std::{borrow::Cow, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// A tenant's id: a slug of 3 to 40 characters of `[a-z0-9-]`. Shared: a copy is a reference
/// count, so records, cache entries and answers name the tenant without copying the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (3..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(Arc::from(s)))
        } else {
            Err(ValidationError::InvalidTenantId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's shared text.
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's state: a suspended tenant's keys are all rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// `live` or `test`. A test key never passes where live is required, and the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Self::Live),
            "test" => Some(Self::Test),
            _ => None,
        }
    }
}

/// Validates a tenant's key prefix: 2 to 16 characters of `[a-z0-9]`, starting with a letter.
/// Keys of the tenant then look like `{prefix}_live_…` and `{prefix}_test_…`.
pub fn validate_key_prefix(p: &str) -> Result<String, ValidationError> {
    let b = p.as_bytes();
    let ok = (2..=16).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p != "pc";
    if ok {
        Ok(p.to_owned())
    } else {
        Err(ValidationError::InvalidKeyPrefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["acme", "a-1", "abc", &"x".repeat(40)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Acme",
            "a_b",
            "a b",
            "",
            &"x".repeat(41),
            "ac/me",
            "açme",
        ] {
            assert_eq!(
                TenantId::parse(bad),
                Err(ValidationError::InvalidTenantId),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_prefixes() {
        assert!(validate_key_prefix("acme").is_ok());
        assert!(validate_key_prefix("sk").is_ok());
        for bad in ["a", "1a", "ac_me", "Acme", "pc", &"a".repeat(17)] {
            assert!(validate_key_prefix(bad).is_err(), "{bad}");
        }
    }
}
