//! Every error code a client can see, with its status and meaning: the one list `docs/errors.md`
//! documents (a test checks that it does).

/// Every code a client can see, its status and meaning. `docs/errors.md` lists each one (a test
/// checks that it does).
pub const CODES: &[(&str, u16, &str)] = &[
    (
        "missing_credential",
        401,
        "no API key in Authorization: Bearer or X-API-Key",
    ),
    (
        "invalid_api_key",
        401,
        "the key is unknown, malformed, revoked or expired",
    ),
    ("ambiguous_credential", 400, "two different keys were sent"),
    (
        "api_key_in_query",
        400,
        "a key was sent in the URL (in the path or the query, however percent-encoded); send it in a header",
    ),
    (
        "invalid_tenant_header",
        400,
        "X-Tenant-Id is not a valid tenant id",
    ),
    (
        "tenant_mismatch",
        403,
        "X-Tenant-Id names another tenant than the key's",
    ),
    (
        "insufficient_scope",
        403,
        "the key lacks a scope this endpoint requires",
    ),
    (
        "root_admin_required",
        403,
        "only a global (root) admin key may do this",
    ),
    (
        "scope_not_held",
        403,
        "an admin key can only grant or revoke admin scopes it holds itself",
    ),
    (
        "scope_not_allowed",
        403,
        "a key's scope is not within its tenant's allowed_scopes",
    ),
    (
        "rate_limit_above_ceiling",
        403,
        "a key's own rate limit allows more than its tenant's max_key_rate_limit (or is missing under one)",
    ),
    (
        "not_found",
        404,
        "no such object (or it belongs to another tenant)",
    ),
    (
        "method_not_allowed",
        405,
        "the path exists but not with this method",
    ),
    ("tenant_exists", 409, "a tenant with this id exists"),
    ("tenant_suspended", 409, "the tenant is suspended"),
    (
        "key_revoked",
        409,
        "the key is revoked and cannot be rolled",
    ),
    ("body_too_large", 413, "the request body is over the limit"),
    (
        "body_timeout",
        408,
        "the client stopped sending its request body for longer than the body-read timeout",
    ),
    (
        "unsupported_media_type",
        415,
        "the body must be application/json",
    ),
    ("invalid_json", 400, "the body is not valid JSON"),
    (
        "invalid_request",
        400,
        "the body has an unknown field, a missing field or a wrong type",
    ),
    (
        "invalid_query",
        400,
        "a query parameter is unknown or malformed",
    ),
    ("invalid_cursor", 400, "the pagination cursor is malformed"),
    (
        "invalid_last_event_id",
        400,
        "Last-Event-ID is not the decimal id of an event",
    ),
    ("invalid_limit", 400, "limit is out of range"),
    ("invalid_ip", 400, "ip is not an IPv4 or IPv6 address"),
    (
        "invalid_tenant_id",
        400,
        "tenant id must be 3-40 characters of a-z, 0-9, '-'",
    ),
    (
        "invalid_key_prefix",
        400,
        "key prefix must be 2-16 characters of a-z, 0-9",
    ),
    ("invalid_scope", 400, "a scope is not resource:action"),
    ("too_many_scopes", 400, "more scopes than allowed"),
    (
        "invalid_cidr",
        400,
        "an ip_allowlist entry is not an address or CIDR",
    ),
    (
        "too_many_cidrs",
        400,
        "more ip_allowlist entries than allowed",
    ),
    (
        "invalid_name",
        400,
        "name is empty, too long or has control characters",
    ),
    (
        "invalid_external_id",
        400,
        "external_id is empty, too long or has control characters",
    ),
    (
        "invalid_metadata",
        400,
        "metadata is too large, too deep or has too many fields",
    ),
    (
        "invalid_expiry",
        400,
        "expires_at is in the past or beyond the maximum lifetime",
    ),
    (
        "invalid_grace_period",
        400,
        "grace_seconds is out of range (0 to 604800)",
    ),
    (
        "invalid_lifetime",
        400,
        "max_key_lifetime_seconds is out of range",
    ),
    ("invalid_admin_scope", 400, "not a known admin scope"),
    (
        "invalid_rate_limit",
        400,
        "rate_limit is malformed or out of range",
    ),
    (
        "invalid_webhook_url",
        400,
        "webhooks: url is not https (http to loopback only), is too long, or has credentials or a fragment",
    ),
    (
        "webhook_url_not_allowed",
        400,
        "webhooks: url's host is a loopback, private, link-local or other non-public address, or an internal name",
    ),
    (
        "invalid_event_types",
        400,
        "webhooks: types is empty or names an unknown event type",
    ),
    (
        "invalid_description",
        400,
        "webhooks: description is empty, too long or has control characters",
    ),
    (
        "invalid_overlap",
        400,
        "webhooks: overlap_seconds is out of range (0 to 604800)",
    ),
    (
        "too_many_webhooks",
        409,
        "webhooks: the tenant has the maximum number of endpoints",
    ),
    (
        "delivery_pending",
        409,
        "webhooks: the delivery is still pending and cannot be redelivered",
    ),
    (
        "route_not_found",
        404,
        "gateway: no route matches this host and path",
    ),
    (
        "invalid_path",
        400,
        "gateway: the path has dot or empty segments, encoded separators, control characters, bad escapes or path parameters the route does not allow",
    ),
    (
        "forbidden_header",
        400,
        "gateway: a header that could rewrite the request (method override, URL rewrite or forwarding header) from a sender that may not send it",
    ),
    (
        "environment_mismatch",
        403,
        "gateway: the route does not accept keys of this environment",
    ),
    (
        "ip_not_allowed",
        403,
        "gateway: the key may not be used from this address",
    ),
    (
        "tenant_inactive",
        403,
        "gateway: the key's tenant is suspended",
    ),
    (
        "rate_limited",
        429,
        "gateway: a rate limit is exhausted; see Retry-After and RateLimit",
    ),
    (
        "too_many_failed_attempts",
        429,
        "gateway: this address failed to authenticate too often; see Retry-After",
    ),
    (
        "upstream_unavailable",
        502,
        "gateway: the upstream refused, reset or could not be reached",
    ),
    (
        "upstream_timeout",
        504,
        "gateway: the upstream did not answer in time",
    ),
    (
        "internal_error",
        500,
        "an internal error; the request id identifies it in the logs",
    ),
    ("service_unavailable", 503, "the store is not reachable"),
    (
        "too_many_streams",
        429,
        "events: the tenant or the admin key has its maximum of open event streams",
    ),
    (
        "too_many_subscribers",
        503,
        "events: too many event streams are open; retry later",
    ),
    (
        "audit_unavailable",
        503,
        "the audit log cannot record requests (fail_closed mode); retry later",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    #[test]
    fn every_code_is_documented_and_unique() {
        let docs = include_str!("../../../docs/errors.md");
        let mut seen = std::collections::HashSet::new();
        for (code, status, _) in CODES {
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                docs.contains(&format!("`{code}`")),
                "docs/errors.md lacks `{code}`"
            );
            assert!((400..600).contains(status));
        }
    }

    #[test]
    fn validation_codes_are_listed() {
        use portcullis_core::error::ValidationError as V;
        for v in [
            V::InvalidTenantId,
            V::InvalidKeyPrefix,
            V::InvalidScope { index: 0 },
            V::TooManyScopes,
            V::InvalidCidr { index: 0 },
            V::TooManyCidrs,
            V::InvalidName,
            V::InvalidExternalId,
            V::InvalidMetadata(""),
            V::InvalidExpiry(""),
            V::InvalidGracePeriod,
            V::InvalidLifetime,
            V::InvalidAdminScope { index: 0 },
            V::InvalidRateLimit(""),
            V::ScopeNotAllowed { index: 0 },
            V::RateLimitAboveCeiling(""),
        ] {
            let listed = CODES.iter().find(|(c, _, _)| *c == v.code());
            assert!(listed.is_some(), "{} not in CODES", v.code());
            let status = ApiError::from(v.clone()).status.as_u16();
            assert_eq!(listed.map(|(_, s, _)| *s), Some(status), "{}", v.code());
        }
    }
}
