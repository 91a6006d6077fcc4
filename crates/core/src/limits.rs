//! Limits on everything that comes from outside. Documented in `docs/api.md`.

/// Scopes on one key.
pub const MAX_SCOPES: usize = 64;
/// Length of one scope string.
pub const MAX_SCOPE_LEN: usize = 129;
/// CIDR entries in one key's IP allowlist.
pub const MAX_CIDRS: usize = 100;
/// Length of a key or tenant name.
pub const MAX_NAME_LEN: usize = 200;
/// Length of a key's external id (the vendor's customer id).
pub const MAX_EXTERNAL_ID_LEN: usize = 256;
/// Serialized size of a key's metadata object.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Top-level fields of a key's metadata object.
pub const MAX_METADATA_KEYS: usize = 32;
/// Nesting depth of a key's metadata object (the object itself is depth 1).
pub const MAX_METADATA_DEPTH: usize = 4;
/// Length of one metadata field name.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Longest grace period of a rolled key: 7 days.
pub const MAX_GRACE_SECONDS: i64 = 7 * 86_400;
/// Default grace period of a rolled key: 24 hours.
pub const DEFAULT_GRACE_SECONDS: i64 = 86_400;
/// Longest key lifetime that can be configured: 10 years.
pub const MAX_LIFETIME_SECONDS: i64 = 10 * 366 * 86_400;
/// Default and largest page of a list.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
/// Default request body limit (bytes).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
