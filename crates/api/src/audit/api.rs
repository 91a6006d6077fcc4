//! `GET /v1/tenants/{tenant}/audit`: a tenant's audit entries, oldest first, with filters and a
//! cursor. Needs the admin scope `audit:read`; a tenant-bound admin key sees its own tenant only.
use axum::{Json, extract::State, http::StatusCode};
use portcullis_audit::{
    AuditFilter, Decision, Kind, export::ExportedEntry, record::MAX_ACTION_LEN,
};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use crate::{
    auth::Admin,
    error::ApiError,
    extract::{Path, Query},
    ops,
    state::AppState,
};

/// Entries per page by default and at most.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// RFC 3339, inclusive.
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    pub until: Option<String>,
    pub key_id: Option<String>,
    pub action: Option<String>,
    pub decision: Option<String>,
    pub kind: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct AuditPage {
    /// The same shape as `portcullis audit export` lines.
    pub entries: Vec<ExportedEntry>,
    pub next_cursor: Option<String>,
}

fn invalid(message: &'static str) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

fn micros(s: &str, name: &'static str) -> Result<i64, ApiError> {
    let t = time::OffsetDateTime::parse(s, &Rfc3339).map_err(|_| invalid(name))?;
    Ok(portcullis_audit::record::micros(t))
}

fn kind(s: &str) -> Option<Kind> {
    Some(match s {
        "request" => Kind::Request,
        "auth" => Kind::Auth,
        "change" => Kind::Change,
        "maintenance" => Kind::Maintenance,
        _ => return None,
    })
}

/// Ids and action names: short, printable, no spaces.
fn plain(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// Checks the query into a filter, the sequence number to continue after, and the limit.
pub fn parse(q: AuditQuery) -> Result<(AuditFilter, u64, u32), ApiError> {
    let since_micros = q
        .since
        .as_deref()
        .map(|s| micros(s, "since is not an RFC 3339 time"))
        .transpose()?;
    let until_micros = q
        .until
        .as_deref()
        .map(|s| micros(s, "until is not an RFC 3339 time"))
        .transpose()?;
    if let (Some(a), Some(b)) = (since_micros, until_micros)
        && a >= b
    {
        return Err(invalid("since must be before until"));
    }
    if q.key_id.as_deref().is_some_and(|k| !plain(k, 64)) {
        return Err(invalid("key_id is malformed"));
    }
    if q.action
        .as_deref()
        .is_some_and(|a| !plain(a, MAX_ACTION_LEN))
    {
        return Err(invalid("action is malformed"));
    }
    let decision = q
        .decision
        .as_deref()
        .map(|d| Decision::parse(d).ok_or_else(|| invalid("decision must be allow or deny")))
        .transpose()?;
    let kind = q
        .kind
        .as_deref()
        .map(|k| {
            kind(k).ok_or_else(|| invalid("kind must be request, auth, change or maintenance"))
        })
        .transpose()?;
    let after = match q.cursor.as_deref() {
        None => 0,
        Some(c) => c
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0 && c.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::bad_request("invalid_cursor", "the cursor is malformed"))?,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 1000",
        ));
    }
    let filter = AuditFilter {
        since_micros,
        until_micros,
        key_id: q.key_id,
        action: q.action,
        kind,
        decision,
    };
    Ok((filter, after, limit))
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Path(tenant): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    admin.require("audit:read")?;
    let tenant = admin.tenant(&tenant)?;
    let (filter, after, limit) = parse(q)?;
    ops::load_tenant(state.store.as_ref(), &tenant).await?;
    let Some(store) = state.audit.store() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit log is disabled on this server",
        ));
    };
    let mut found = store
        .search(tenant.as_str(), &filter, after, limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let next_cursor = if found.len() > limit as usize {
        found.truncate(limit as usize);
        found.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    let entries = found
        .iter()
        .map(ExportedEntry::of)
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> AuditQuery {
        AuditQuery {
            since: None,
            until: None,
            key_id: None,
            action: None,
            decision: None,
            kind: None,
            cursor: None,
            limit: None,
        }
    }

    #[test]
    fn parameters_are_checked() {
        let (f, after, limit) = parse(AuditQuery {
            since: Some("2026-01-01T00:00:00Z".into()),
            until: Some("2026-01-02T00:00:00Z".into()),
            kind: Some("auth".into()),
            decision: Some("deny".into()),
            cursor: Some("42".into()),
            limit: Some(1000),
            ..q()
        })
        .expect("valid");
        assert_eq!(f.kind, Some(Kind::Auth));
        assert_eq!(f.decision, Some(Decision::Deny));
        assert_eq!((after, limit), (42, 1000));
        assert_eq!(
            f.until_micros.unwrap() - f.since_micros.unwrap(),
            86_400_000_000
        );
        let code = |q| parse(q).err().map(|e| e.code);
        assert_eq!(
            code(AuditQuery {
                limit: Some(0),
                ..q()
            }),
            Some("invalid_limit")
        );
        assert_eq!(
            code(AuditQuery {
                limit: Some(1001),
                ..q()
            }),
            Some("invalid_limit")
        );
        assert_eq!(
            code(AuditQuery {
                cursor: Some("x".into()),
                ..q()
            }),
            Some("invalid_cursor")
        );
        assert_eq!(
            code(AuditQuery {
                cursor: Some("+1".into()),
                ..q()
            }),
            Some("invalid_cursor")
        );
        assert_eq!(
            code(AuditQuery {
                since: Some("yesterday".into()),
                ..q()
            }),
            Some("invalid_query")
        );
        assert_eq!(
            code(AuditQuery {
                since: Some("2026-01-02T00:00:00Z".into()),
                until: Some("2026-01-01T00:00:00Z".into()),
                ..q()
            }),
            Some("invalid_query")
        );
        assert_eq!(
            code(AuditQuery {
                kind: Some("other".into()),
                ..q()
            }),
            Some("invalid_query")
        );
        assert_eq!(
            code(AuditQuery {
                decision: Some("maybe".into()),
                ..q()
            }),
            Some("invalid_query")
        );
        assert_eq!(
            code(AuditQuery {
                action: Some("a b".into()),
                ..q()
            }),
            Some("invalid_query")
        );
        assert_eq!(
            code(AuditQuery {
                key_id: Some("x".repeat(65)),
                ..q()
            }),
            Some("invalid_query")
        );
    }
}
