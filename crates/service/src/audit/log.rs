//! The [`AuditLog`] handle: producers hand records to it without ever waiting for the disk.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use portcullis_audit::{AuditStore, CheckpointSigner, Sealable};
use portcullis_core::clock::Clock;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::{
    refusals::{Refusals, Refused},
    writer::{self, WriterSettings},
};
use crate::{
    config::{AuditConfig, AuditMode},
    metrics::AuditMetrics,
};

/// What travels to the writer: a record, or a request to report once everything before it is
/// committed.
#[derive(Debug)]
pub(crate) enum Msg {
    Record(Box<dyn Sealable>),
    /// Answers once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
    /// The same, after also signing every chain head not yet signed (at shutdown, so a
    /// stopped server leaves no unsigned tail).
    SealHeads(oneshot::Sender<()>),
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
    /// `fail_closed`: records cannot be kept now (the last write failed, or no place in the
    /// queue freed up in time), so the request is refused.
    #[error("the audit log cannot record now")]
    Unavailable,
}

/// How long a request waits for a place in a full queue (`fail_closed`) before it is refused.
pub const ADMIT_WAIT: Duration = Duration::from_secs(1);

/// A place in the queue reserved at admission for a request's record (`fail_closed`), so a
/// request that was served is always recorded; empty in the other modes.
#[derive(Debug)]
pub struct QueuePlace(Option<mpsc::OwnedPermit<Msg>>);

/// Health shared by the handle and the writer (and the window of aggregated refusals, which
/// the handle fills and the writer takes).
#[derive(Debug)]
pub(crate) struct Health {
    /// The last append failed (cleared by the next successful one).
    pub failing: AtomicBool,
    /// The audit database is at or over `max_bytes` (as last measured by the writer).
    pub full: AtomicBool,
    /// The degraded episodes (records dropped or writes failing), for watchers
    /// ([`AuditLog::episodes`]): told at each start and end, each logged once.
    pub episodes: watch::Sender<Episodes>,
    pub metrics: AuditMetrics,
    /// Gateway refusals of the current window, aggregated.
    pub refusals: Refusals,
}

/// Degraded episodes of the audit log so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Episodes {
    /// Episodes started since the log started.
    pub started: u64,
    /// Is one under way?
    pub degraded: bool,
}

impl Health {
    /// Starts a degraded episode (one log line per episode).
    pub fn degrade(&self, why: &str) {
        // Called for every record dropped while the queue is full: a shared read first, the
        // write only when an episode starts.
        if self.episodes.borrow().degraded {
            return;
        }
        let started = self.episodes.send_if_modified(|e| {
            let start = !e.degraded;
            if start {
                e.started += 1;
                e.degraded = true;
            }
            start
        });
        if started {
            tracing::error!(reason = why, "audit log degraded");
        }
    }

    /// Ends a degraded episode.
    pub fn recover(&self) {
        let ended = self
            .episodes
            .send_if_modified(|e| std::mem::replace(&mut e.degraded, false));
        if ended {
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
    /// Ends the writer's linger when someone waits for a flush.
    flush_now: Arc<Notify>,
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
        let refusals = Refusals::new(config.refusal_max_groups, config.refusal_window_seconds);
        let health = Arc::new(Health {
            failing: AtomicBool::new(false),
            full: AtomicBool::new(false),
            episodes: watch::Sender::new(Episodes::default()),
            metrics: metrics.clone(),
            refusals,
        });
        metrics.healthy.set(1);
        let settings = WriterSettings {
            batch_max: config.batch_max,
            linger: Duration::from_millis(config.batch_linger_ms),
            checkpoint_every_records: config.checkpoint_every_records,
            checkpoint_every: Duration::from_secs(config.checkpoint_every_seconds),
            capacity: config.queue_capacity,
            fail_closed: config.mode == AuditMode::FailClosed,
            max_bytes: config.max_bytes,
            refusal_window: Duration::from_secs(config.refusal_window_seconds),
        };
        let flush_now = Arc::new(Notify::new());
        let task = tokio::spawn(writer::run(
            rx,
            store.clone(),
            signer.clone(),
            clock,
            health.clone(),
            flush_now.clone(),
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
                flush_now,
            })),
            metrics,
        }
    }

    /// Is the log recording (not disabled)?
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `record`; never waits. A record that does not fit the queue is dropped and
    /// counted (and in `fail_closed` mode new requests are refused until there is room). In
    /// `best_effort` mode, a record is also dropped and counted while the audit database is at
    /// `max_bytes`.
    pub fn record(&self, record: impl Sealable) {
        let Some(inner) = &self.inner else {
            return;
        };
        if !inner.fail_closed && inner.health.full.load(Ordering::Relaxed) {
            self.metrics.dropped.inc();
            self.metrics.dropped_over_budget.inc();
            inner.health.degrade("audit database at max_bytes");
            return;
        }
        self.queue(inner, record);
    }

    /// [`record`](Self::record) for maintenance records (a retention purge), which are kept
    /// even while the database is at `max_bytes`: a purge is what frees the space.
    pub fn record_maintenance(&self, record: impl Sealable) {
        if let Some(inner) = &self.inner {
            self.queue(inner, record);
        }
    }

    /// Counts a gateway refusal of a request without a valid credential in its group of the
    /// current window (see [`super::refusals`]); the group's record is written when the window
    /// ends, when someone flushes, or at shutdown. `client_ip` renders the address for the
    /// record (called once per group). Never waits.
    pub fn refused(&self, refused: &Refused<'_>, client_ip: impl FnOnce() -> String) {
        let Some(inner) = &self.inner else {
            return;
        };
        if inner.tx.is_closed() {
            // Stopped: nobody would write the window any more.
            self.metrics.dropped.inc();
            return;
        }
        inner.health.refusals.add(refused, client_ip);
        self.metrics.refusals_aggregated.inc();
    }

    /// Is the audit database at or over `max_bytes` (as last measured)?
    pub fn over_budget(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.health.full.load(Ordering::Relaxed))
    }

    fn queue(&self, inner: &Inner, record: impl Sealable) {
        if inner.tx.try_send(Msg::Record(Box::new(record))).is_err() {
            self.metrics.dropped.inc();
            inner.health.degrade("audit queue full");
        }
    }

    /// Admits a request. In `fail_closed` mode it reserves a place in the queue for the request's
    /// record, waiting up to [`ADMIT_WAIT`] while the queue is full (backpressure rather than
    /// refusing at once), and refuses while the last write failed or when no place frees up in
    /// time. In the other modes (and for a disabled log) it admits at once.
    pub async fn admit(&self) -> Result<QueuePlace, AuditError> {
        let Some(inner) = self.inner.as_ref().filter(|i| i.fail_closed) else {
            return Ok(QueuePlace(None));
        };
        if inner.health.failing.load(Ordering::Relaxed) || inner.health.full.load(Ordering::Relaxed)
        {
            return Err(AuditError::Unavailable);
        }
        // A free place is taken at once; only a full queue sets up the wait.
        let tx = match inner.tx.clone().try_reserve_owned() {
            Ok(permit) => return Ok(QueuePlace(Some(permit))),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(AuditError::Stopped),
            Err(mpsc::error::TrySendError::Full(tx)) => tx,
        };
        match tokio::time::timeout(ADMIT_WAIT, tx.reserve_owned()).await {
            Ok(Ok(permit)) => Ok(QueuePlace(Some(permit))),
            Ok(Err(_)) => Err(AuditError::Stopped),
            Err(_) => {
                inner.health.degrade("audit queue full");
                Err(AuditError::Unavailable)
            }
        }
    }

    /// Queues a request's record in the place reserved at admission (without one, as
    /// [`record`](Self::record) does).
    pub fn record_in(&self, place: QueuePlace, record: impl Sealable) {
        match place.0 {
            Some(permit) => {
                permit.send(Msg::Record(Box::new(record)));
            }
            None => self.record(record),
        }
    }

    /// Should requests be refused now? Only in `fail_closed` mode, while the last write failed,
    /// the queue is full or the database is at `max_bytes`. Three atomic reads.
    pub fn refusing(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| {
            i.fail_closed
                && (i.health.failing.load(Ordering::Relaxed)
                    || i.health.full.load(Ordering::Relaxed)
                    || i.tx.capacity() == 0)
        })
    }

    /// The degraded episodes, watched (`None` when disabled): a watcher that looks later still
    /// learns of an episode that began and ended in between, from the count.
    pub fn episodes(&self) -> Option<watch::Receiver<Episodes>> {
        self.inner.as_ref().map(|i| i.health.episodes.subscribe())
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

    /// Waits until every record queued before this call is committed, and the aggregated
    /// refusals counted so far (their window closes early). Waits as long as the store keeps
    /// failing; bound it with [`flush_within`](Self::flush_within).
    pub async fn flush(&self) -> Result<(), AuditError> {
        self.send_and_wait(Msg::Flush).await
    }

    async fn send_and_wait(&self, msg: fn(oneshot::Sender<()>) -> Msg) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let (done, wait) = oneshot::channel();
        inner
            .tx
            .send(msg(done))
            .await
            .map_err(|_| AuditError::Stopped)?;
        inner.flush_now.notify_one();
        wait.await.map_err(|_| AuditError::Stopped)
    }

    /// [`flush`](Self::flush), giving up after `limit`.
    pub async fn flush_within(&self, limit: Duration) -> Result<(), AuditError> {
        tokio::time::timeout(limit, self.flush())
            .await
            .map_err(|_| AuditError::Timeout(limit))?
    }

    /// Commits everything queued and the aggregated refusals, and signs every chain head
    /// (within `limit`), then stops the writer. Records after this are dropped and counted.
    pub async fn shutdown(&self, limit: Duration) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let flushed = tokio::time::timeout(limit, self.send_and_wait(Msg::SealHeads))
            .await
            .map_err(|_| AuditError::Timeout(limit))
            .and_then(|r| r);
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

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
