//! The [`AuditLog`] handle: producers hand records to it without ever waiting for the disk.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use portcullis_audit::{AuditStore, CheckpointSigner, Record};
use portcullis_core::clock::Clock;
use tokio::sync::{mpsc, oneshot};

use super::writer::{self, WriterSettings};
use crate::{
    config::{AuditConfig, AuditMode},
    metrics::AuditMetrics,
};

/// What travels to the writer: a record, or a request to report once everything before it is
/// committed.
#[derive(Debug)]
pub(crate) enum Msg {
    Record(Box<Record>),
    Flush(oneshot::Sender<()>),
}

/// Why a flush did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The writer has stopped (the log was shut down).
    #[error("the audit writer has stopped")]
    Stopped,
    /// The records were not committed in time (the audit store is failing or slow).
    #[error("the audit records were not written within {0:?}; see the log for the store error")]
    Timeout(Duration),
}

/// Health shared by the handle and the writer.
#[derive(Debug)]
pub(crate) struct Health {
    /// The last append failed (cleared by the next successful one).
    pub failing: AtomicBool,
    /// A degraded episode is under way (records dropped or writes failing): logged once when it
    /// starts, once when it ends.
    pub degraded: AtomicBool,
    pub metrics: AuditMetrics,
}

impl Health {
    /// Starts a degraded episode (one log line per episode).
    pub fn degrade(&self, why: &str) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::error!(reason = why, "audit log degraded");
        }
    }

    /// Ends a degraded episode.
    pub fn recover(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::warn!("audit log recovered");
        }
    }
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Msg>,
    capacity: usize,
    fail_closed: bool,
    health: Arc<Health>,
    store: Arc<dyn AuditStore>,
    signer: CheckpointSigner,
    config: AuditConfig,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The audit log: a cheap handle (clone it freely). [`record`](Self::record) never waits;
/// one writer task seals queued records into hash chains and commits them in batches.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
    metrics: AuditMetrics,
}

impl AuditLog {
    /// A log that accepts and discards everything (`[audit] enabled = false`).
    pub fn disabled() -> Self {
        Self {
            inner: None,
            metrics: AuditMetrics::default(),
        }
    }

    /// Starts the writer on `store` (continuing its chains) and returns the handle. Must be
    /// called within a tokio runtime.
    pub fn start(
        config: &AuditConfig,
        store: Arc<dyn AuditStore>,
        signer: CheckpointSigner,
        clock: Arc<dyn Clock>,
        metrics: AuditMetrics,
    ) -> Self {
        if !config.enabled {
            return Self {
                inner: None,
                metrics,
            };
        }
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let health = Arc::new(Health {
            failing: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            metrics: metrics.clone(),
        });
        metrics.healthy.set(1);
        let settings = WriterSettings {
            batch_max: config.batch_max,
            checkpoint_every_records: config.checkpoint_every_records,
            checkpoint_every: Duration::from_secs(config.checkpoint_every_seconds),
            capacity: config.queue_capacity,
        };
        let task = tokio::spawn(writer::run(
            rx,
            store.clone(),
            signer.clone(),
            clock,
            health.clone(),
            settings,
        ));
        Self {
            inner: Some(Arc::new(Inner {
                tx,
                capacity: config.queue_capacity,
                fail_closed: config.mode == AuditMode::FailClosed,
                health,
                store,
                signer,
                config: config.clone(),
                writer: std::sync::Mutex::new(Some(task)),
            })),
            metrics,
        }
    }

    /// Is the log recording (not disabled)?
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `record`; never waits. A record that does not fit the queue is dropped and
    /// counted (and in `fail_closed` mode new requests are refused until there is room).
    pub fn record(&self, record: Record) {
        let Some(inner) = &self.inner else {
            return;
        };
        if inner.tx.try_send(Msg::Record(Box::new(record))).is_err() {
            self.metrics.dropped.inc();
            inner.health.degrade("audit queue full");
        }
    }

    /// Should requests be refused now? Only in `fail_closed` mode, while the last write failed or
    /// the queue is full. Two atomic reads.
    pub fn refusing(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| {
            i.fail_closed && (i.health.failing.load(Ordering::Relaxed) || i.tx.capacity() == 0)
        })
    }

    /// Did the last write succeed (true for a disabled log)?
    pub fn healthy(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|i| !i.health.failing.load(Ordering::Relaxed))
    }

    /// Records waiting for the writer.
    pub fn queued(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |i| i.capacity - i.tx.capacity())
    }

    /// The store the log writes to (`None` when disabled), for reading it back.
    pub fn store(&self) -> Option<Arc<dyn AuditStore>> {
        self.inner.as_ref().map(|i| i.store.clone())
    }

    /// The checkpoint signer (`None` when disabled): its public key verifies the checkpoints.
    pub fn signer(&self) -> Option<&CheckpointSigner> {
        self.inner.as_ref().map(|i| &i.signer)
    }

    /// The `[audit]` configuration it was started with (`None` when disabled).
    pub fn config(&self) -> Option<&AuditConfig> {
        self.inner.as_ref().map(|i| &i.config)
    }

    /// The log's metric handles.
    pub fn metrics(&self) -> &AuditMetrics {
        &self.metrics
    }

    /// Waits until every record queued before this call is committed. Waits as long as the
    /// store keeps failing; bound it with [`flush_within`](Self::flush_within).
    pub async fn flush(&self) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let (done, wait) = oneshot::channel();
        inner
            .tx
            .send(Msg::Flush(done))
            .await
            .map_err(|_| AuditError::Stopped)?;
        wait.await.map_err(|_| AuditError::Stopped)
    }

    /// [`flush`](Self::flush), giving up after `limit`.
    pub async fn flush_within(&self, limit: Duration) -> Result<(), AuditError> {
        tokio::time::timeout(limit, self.flush())
            .await
            .map_err(|_| AuditError::Timeout(limit))?
    }

    /// Commits everything queued (within `limit`), then stops the writer. Records after this are
    /// dropped and counted.
    pub async fn shutdown(&self, limit: Duration) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let flushed = self.flush_within(limit).await;
        let task = inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
        flushed
    }
}
