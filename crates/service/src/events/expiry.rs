//! `key.expiring` and `key.expired`: a periodic scan of keys by expiry.
//!
//! Each scan covers the time since the previous one: keys whose notice point (`expiring_days`
//! before expiry) or expiry fell in that span get their event. The message id of each is
//! derived from the key and its expiry ([`NewEvent::once`]), so a notice is stored once per key
//! and expiry even when several nodes scan, or a scan is repeated (the embedded store refuses a
//! message id forever; JetStream within its duplicate window — a node that restarts after it
//! may repeat a notice, which consumers de-duplicate by type, key and expiry). The first scan
//! after start covers the whole notice window, so nothing is missed across a restart.
//! An expiry moved later by an update gets a new notice for the new time.
use std::sync::Arc;

use portcullis_core::model::ApiKey;
use portcullis_events::{EventType, NewEvent};
use time::{Duration, OffsetDateTime};

use super::key_data;
use portcullis_store::Store;

use super::Events;

/// Keys read per store query.
const PAGE: u32 = 500;

/// Publishes the notices of keys whose notice point or expiry is in `since..now`; returns how
/// many events were stored.
pub async fn scan(
    store: &dyn Store,
    events: &Events,
    since: OffsetDateTime,
    now: OffsetDateTime,
) -> usize {
    let Some(config) = events.config() else {
        return 0;
    };
    let ahead = Duration::days(i64::from(config.expiring_days));
    let mut stored = 0;
    // Expiring: notice point (expiry - ahead) in since..now, and not expired yet.
    let from = (since + ahead).max(now);
    stored += scan_window(
        store,
        events,
        EventType::KeyExpiring,
        from,
        now + ahead,
        now,
    )
    .await;
    stored += scan_window(store, events, EventType::KeyExpired, since, now, now).await;
    stored
}

async fn scan_window(
    store: &dyn Store,
    events: &Events,
    kind: EventType,
    from: OffsetDateTime,
    to: OffsetDateTime,
    now: OffsetDateTime,
) -> usize {
    if from >= to {
        return 0;
    }
    let mut after: Option<(OffsetDateTime, String)> = None;
    let mut stored = 0;
    loop {
        let keys = match store.keys_expiring(from, to, after.as_ref(), PAGE).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, event = kind.as_str(), "key expiry scan failed");
                return stored;
            }
        };
        let full = keys.len() >= PAGE as usize;
        after = keys
            .last()
            .and_then(|k| k.expires_at.map(|t| (t, k.id.clone())));
        let notices: Vec<NewEvent> = keys.iter().filter_map(|k| notice(kind, k, now)).collect();
        stored += events.publish(notices).await.len();
        if !full || after.is_none() {
            return stored;
        }
    }
}

fn notice(kind: EventType, key: &ApiKey, now: OffsetDateTime) -> Option<NewEvent> {
    let expires = key.expires_at?;
    let once = format!("{}:{}", key.id, expires.unix_timestamp());
    Some(NewEvent::once(
        kind,
        Some(key.tenant_id.clone()),
        now,
        &once,
        key_data(key),
    ))
}

/// Scans every `expiry_check_seconds` (the first scan at once).
pub fn spawn_scanner(
    store: Arc<dyn Store>,
    events: Events,
    clock: Arc<dyn portcullis_core::clock::Clock>,
) -> Option<tokio::task::JoinHandle<()>> {
    let config = events.config()?;
    let every = config.expiry_check_seconds;
    let ahead = Duration::days(i64::from(config.expiring_days));
    Some(tokio::spawn(async move {
        let mut since: Option<OffsetDateTime> = None;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = clock.now();
            // The first scan covers the whole notice window, and expiries as far back.
            let from = since.unwrap_or(now - ahead);
            scan(store.as_ref(), &events, from, now).await;
            since = Some(now);
        }
    }))
}
