//! Cursor pagination: `?cursor=<id of the last item>&limit=N`, answered as
//! `{"data": [...], "next_cursor": "…" | null}`.
use portcullis_core::{ids, limits, tenant::TenantId};
use portcullis_store::{Page, PageRequest};
use serde::Serialize;

use crate::error::ApiError;

/// Validates a cursor (an id of `kind`) and a limit into a page request.
pub fn request(
    kind: &str,
    cursor: Option<String>,
    limit: Option<u32>,
) -> Result<PageRequest, ApiError> {
    // Tenants page by their id (a slug); everything else by its generated id.
    let well_formed = |c: &str| match kind {
        "tenant" => TenantId::parse(c).is_ok(),
        _ => ids::is_id(kind, c),
    };
    if cursor.as_deref().is_some_and(|c| !well_formed(c)) {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            "the cursor is malformed",
        ));
    }
    let limit = limit.unwrap_or(limits::DEFAULT_PAGE_SIZE);
    if !(1..=limits::MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 100",
        ));
    }
    Ok(PageRequest {
        after: cursor,
        limit,
    })
}

#[derive(Debug, Serialize)]
pub struct PageBody<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> From<Page<T>> for PageBody<T> {
    fn from(p: Page<T>) -> Self {
        Self {
            data: p.items,
            next_cursor: p.next_cursor,
        }
    }
}
