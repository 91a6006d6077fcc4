//! The webhook tables' rows: their columns, decoding a row into an [`Endpoint`] or a
//! [`Delivery`] (a value the store did not write is a `corrupt` backend error), timestamps, and
//! the one-row read of a tenant's endpoint inside a transaction.
use portcullis_core::tenant::TenantId;
use portcullis_events::{
    TypeSet,
    webhook::{Delivery, DeliveryStatus, Endpoint, WebhookError},
};
use sqlx::{Row, Sqlite, Transaction, sqlite::SqliteRow};
use time::OffsetDateTime;

pub(super) const ENDPOINT_COLUMNS: &str = "id, tenant, url, description, types, enabled, created_at, \
                                updated_at, previous_secret_expires_at";
pub(super) const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_id, event_type, status, attempts, \
                                next_attempt_at, last_status_code, last_error, created_at, \
                                delivered_at";

pub(super) fn backend(e: sqlx::Error) -> WebhookError {
    WebhookError::Backend(format!("webhooks database: {e}"))
}

pub(super) fn corrupt(what: &str) -> WebhookError {
    WebhookError::Backend(format!("webhooks database: corrupt {what}"))
}

pub(super) fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

pub(super) fn from_ts(s: i64) -> Result<OffsetDateTime, WebhookError> {
    OffsetDateTime::from_unix_timestamp(s).map_err(|_| corrupt("timestamp"))
}

pub(super) fn get<'r, T>(row: &'r SqliteRow, col: &str) -> Result<T, WebhookError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(col).map_err(backend)
}

pub(super) fn types_json(t: TypeSet) -> String {
    serde_json::to_string(&t.iter().map(|t| t.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

pub(super) fn endpoint(row: &SqliteRow) -> Result<Endpoint, WebhookError> {
    let types: String = get(row, "types")?;
    let names: Vec<String> = serde_json::from_str(&types).map_err(|_| corrupt("types"))?;
    let tenant: String = get(row, "tenant")?;
    Ok(Endpoint {
        id: get(row, "id")?,
        tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant"))?,
        url: get(row, "url")?,
        description: get(row, "description")?,
        types: TypeSet::from_names(&names).map_err(|_| corrupt("types"))?,
        enabled: get::<i64>(row, "enabled")? != 0,
        created_at: from_ts(get(row, "created_at")?)?,
        updated_at: from_ts(get(row, "updated_at")?)?,
        previous_secret_expires_at: get::<Option<i64>>(row, "previous_secret_expires_at")?
            .map(from_ts)
            .transpose()?,
    })
}

pub(super) fn delivery(row: &SqliteRow) -> Result<Delivery, WebhookError> {
    let status: String = get(row, "status")?;
    let opt_ts = |col: &str| -> Result<Option<OffsetDateTime>, WebhookError> {
        get::<Option<i64>>(row, col)?.map(from_ts).transpose()
    };
    Ok(Delivery {
        id: get(row, "id")?,
        webhook_id: get(row, "endpoint_id")?,
        event_id: u64::try_from(get::<i64>(row, "event_id")?).map_err(|_| corrupt("event id"))?,
        event_type: get(row, "event_type")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        attempts: u32::try_from(get::<i64>(row, "attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: opt_ts("next_attempt_at")?,
        last_status_code: get::<Option<i64>>(row, "last_status_code")?
            .and_then(|c| u16::try_from(c).ok()),
        last_error: get(row, "last_error")?,
        created_at: from_ts(get(row, "created_at")?)?,
        delivered_at: opt_ts("delivered_at")?,
    })
}

pub(super) async fn endpoint_in(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: &TenantId,
    id: &str,
) -> Result<Endpoint, WebhookError> {
    let row = sqlx::query(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant = ? AND id = ?"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    row.as_ref()
        .map(endpoint)
        .transpose()?
        .ok_or(WebhookError::NotFound)
}
