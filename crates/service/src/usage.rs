//! `last_used_at` is never written on the request path: uses are collected in memory (at most one
//! per key per minute, see [`crate::cache::CachedKey::should_touch`]) and flushed in one batch.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use portcullis_core::OffsetDateTime;
use portcullis_store::Store;

use crate::metrics::Metrics;

/// How often a key's use is reported at most.
pub const TOUCH_EVERY_SECONDS: i64 = 60;
/// How often pending uses are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// Pending uses kept at most; beyond this a flush is due and further uses wait for it.
const MAX_PENDING: usize = 100_000;

#[derive(Debug, Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<HashMap<String, OffsetDateTime>>>,
}

impl UsageRecorder {
    pub fn record(&self, key_id: &str, at: OffsetDateTime) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() < MAX_PENDING || p.contains_key(key_id) {
            p.insert(key_id.to_owned(), at);
        }
    }

    /// Writes pending uses; on failure they are put back to be tried again.
    pub async fn flush(&self, store: &dyn Store, metrics: &Metrics) {
        let batch: Vec<(String, OffsetDateTime)> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.drain().collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(e) = store.touch_keys(&batch).await {
            metrics.usage_flush_errors.inc();
            tracing::warn!(error = %e, count = batch.len(), "could not record key usage; will retry");
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (k, t) in batch {
                p.entry(k).or_insert(t);
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until the task is dropped.
    pub fn spawn_flusher(
        &self,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.flush(store.as_ref(), &metrics).await;
            }
        })
    }
}
