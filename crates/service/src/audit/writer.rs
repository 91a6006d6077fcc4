//! The writer task: takes up to `batch_max` queued records at once, seals them into their
//! chains, adds the checkpoints that are due and commits the batch in one `append`.
//!
//! - A failed append puts the chain heads back, marks the log failing and retries the same
//!   batch with backoff: records are not lost while it retries (the queue fills behind it, and
//!   in `fail_closed` mode requests are refused).
//! - When another process (the operator CLI) appended to a chain in between, the store's heads
//!   differ from the writer's: it reloads them and seals the batch again, at once.
//! - A flush request is answered once everything queued before it is committed; it also ends
//!   the writer's linger at once (through a `Notify`, so that records do not wake the writer
//!   one by one).
//! - Aggregated gateway refusals ([`super::refusals`]) are taken and sealed by the writer itself at
//!   the end of each window, with a flush request and at shutdown: they never wait for a place
//!   in the queue.
//! - With a disk budget (`max_bytes`), the writer measures the database every
//!   [`SIZE_CHECK_EVERY`] (its pages in use, a cheap header read, never per record) and sets
//!   the log's `full` flag: `fail_closed` refuses requests, `best_effort` drops records.
use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use portcullis_audit::{
    AuditStore, Chainer, Checkpoint, CheckpointKind, CheckpointSigner, Entry, Head, Sealable,
};
use portcullis_core::clock::Clock;
use tokio::sync::{Notify, mpsc, oneshot};

use super::log::{Health, Msg};

#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterSettings {
    pub batch_max: usize,
    pub linger: Duration,
    pub checkpoint_every_records: u64,
    pub checkpoint_every: Duration,
    pub capacity: usize,
    pub fail_closed: bool,
    pub max_bytes: Option<u64>,
    pub refusal_window: Duration,
}

/// How often the writer measures the database against `max_bytes`.
pub(crate) const SIZE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Per chain: what was signed last, and when.
#[derive(Debug, Clone, Copy)]
struct Signed {
    seq: u64,
    at: Instant,
}

struct Writer {
    store: Arc<dyn AuditStore>,
    signer: CheckpointSigner,
    clock: Arc<dyn Clock>,
    health: Arc<Health>,
    settings: WriterSettings,
    chainer: Chainer,
    signed: HashMap<String, Signed>,
}

const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

pub(crate) async fn run(
    mut rx: mpsc::Receiver<Msg>,
    store: Arc<dyn AuditStore>,
    signer: CheckpointSigner,
    clock: Arc<dyn Clock>,
    health: Arc<Health>,
    flush_now: Arc<Notify>,
    settings: WriterSettings,
) {
    let mut w = Writer {
        store,
        signer,
        clock,
        health,
        settings,
        chainer: Chainer::default(),
        signed: HashMap::new(),
    };
    w.load_heads().await;
    let tick_every = (settings.checkpoint_every / 2).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let window = settings.refusal_window;
    let mut window_end = tokio::time::interval_at(tokio::time::Instant::now() + window, window);
    window_end.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut size = tokio::time::interval(SIZE_CHECK_EVERY);
    size.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Batch {
        records: Vec::with_capacity(settings.batch_max),
        waiters: Vec::new(),
        seal_heads: false,
    };
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = tick.tick() => {
                w.commit(&[], Due::Time).await;
                w.maybe_recover(&rx);
                continue;
            }
            _ = window_end.tick() => {
                let refusals = w.take_refusals();
                w.commit(&refusals, Due::CountOrTime).await;
                continue;
            }
            _ = size.tick(), if settings.max_bytes.is_some() => {
                w.check_size().await;
                w.maybe_recover(&rx);
                continue;
            }
        };
        let Some(first) = first else { break };
        commit_batch(&mut w, &mut batch, first, &mut rx, &flush_now).await;
    }
}

/// Commits `first` and what else is queued as one batch, then answers the flush requests in it.
async fn commit_batch(
    w: &mut Writer,
    batch: &mut Batch,
    first: Msg,
    rx: &mut mpsc::Receiver<Msg>,
    flush_now: &Notify,
) {
    let settings = w.settings;
    // Take what is queued; then, unless someone waits for a flush, linger once for more (up
    // to `batch_max`), so that appends stay large when records trickle in. One sleep per
    // batch: waiting on the queue instead would wake this task for every record.
    batch.take(first);
    batch.fill(rx, settings.batch_max);
    if batch.records.len() < settings.batch_max
        && batch.waiters.is_empty()
        && !batch.records.is_empty()
    {
        tokio::select! {
            () = tokio::time::sleep(settings.linger) => {}
            () = flush_now.notified() => {}
        }
        batch.fill(rx, settings.batch_max);
    }
    if !batch.waiters.is_empty() {
        // Someone waits for everything recorded so far: the refusals of the window too.
        batch.records.extend(w.take_refusals());
    }
    w.health
        .metrics
        .queue_depth
        .set(i64::try_from(settings.capacity - rx.capacity()).unwrap_or(i64::MAX));
    if !batch.records.is_empty() {
        w.commit(&batch.records, Due::CountOrTime).await;
        batch.records.clear();
    }
    if std::mem::take(&mut batch.seal_heads) {
        w.commit(&[], Due::All).await;
    }
    w.maybe_recover(rx);
    for done in batch.waiters.drain(..) {
        let _ = done.send(());
    }
}

/// What the writer took from the queue for its next commit.
struct Batch {
    records: Vec<Box<dyn Sealable>>,
    /// Flush requests, answered once the batch is committed.
    waiters: Vec<oneshot::Sender<()>>,
    /// Sign every chain head after the batch (at shutdown).
    seal_heads: bool,
}

impl Batch {
    fn take(&mut self, m: Msg) {
        match m {
            Msg::Record(r) => self.records.push(r),
            Msg::Flush(done) => self.waiters.push(done),
            Msg::SealHeads(done) => {
                self.seal_heads = true;
                self.waiters.push(done);
            }
        }
    }

    /// Takes what is queued, until the batch holds `max` records.
    fn fill(&mut self, rx: &mut mpsc::Receiver<Msg>, max: usize) {
        while self.records.len() < max {
            match rx.try_recv() {
                Ok(m) => self.take(m),
                Err(_) => return,
            }
        }
    }
}

impl Writer {
    /// Ends a degraded episode once writes succeed, the database is under its budget and the
    /// queue is at most half full again (not after every batch while drops go on, which would
    /// log an episode per batch).
    fn maybe_recover(&self, rx: &mpsc::Receiver<Msg>) {
        if !self.health.failing.load(Ordering::Relaxed)
            && !self.health.full.load(Ordering::Relaxed)
            && rx.capacity().saturating_mul(2) >= self.settings.capacity
        {
            self.health.recover();
        }
    }

    /// The aggregated refusals of the window now ending, as records to seal; in `best_effort`
    /// mode while the database is at `max_bytes`, none (they are dropped and counted).
    fn take_refusals(&self) -> Vec<Box<dyn Sealable>> {
        let records = self.health.refusals.take();
        if !self.settings.fail_closed && self.health.full.load(Ordering::Relaxed) {
            let m = &self.health.metrics;
            m.dropped.inc_by(records.len() as u64);
            m.dropped_over_budget.inc_by(records.len() as u64);
            if !records.is_empty() {
                self.health.degrade("audit database at max_bytes");
            }
            return Vec::new();
        }
        records
            .into_iter()
            .map(|r| Box::new(r) as Box<dyn Sealable>)
            .collect()
    }

    /// Measures the database against `max_bytes` and sets the log's `full` flag.
    async fn check_size(&self) {
        let Some(max) = self.settings.max_bytes else {
            return;
        };
        let used = match self.store.used_bytes().await {
            Ok(Some(used)) => used,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot measure the audit database");
                return;
            }
        };
        let m = &self.health.metrics;
        m.store_bytes.set(i64::try_from(used).unwrap_or(i64::MAX));
        let over = used >= max;
        m.over_budget.set(i64::from(over));
        let was = self.health.full.swap(over, Ordering::Relaxed);
        if over && !was {
            tracing::error!(
                used_bytes = used,
                max_bytes = max,
                "the audit database reached audit.max_bytes"
            );
            self.health.degrade("audit database at max_bytes");
        } else if was && !over {
            tracing::warn!(
                used_bytes = used,
                max_bytes = max,
                "the audit database is under audit.max_bytes again"
            );
        }
    }

    /// Continues the stored chains; retries until the store answers.
    async fn load_heads(&mut self) {
        let mut backoff = BACKOFF_START;
        loop {
            match self.store.heads().await {
                Ok(heads) => {
                    self.reset(heads);
                    return;
                }
                Err(e) => {
                    self.failed(&e.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn reset(&mut self, heads: Vec<(String, Head)>) {
        let now = Instant::now();
        for (chain, head) in &heads {
            // A chain met in the store is counted from its stored head: that head may be signed
            // already (signing it again would collide with the stored checkpoint), and the next
            // checkpoint of the chain covers it through the hash links anyway.
            self.signed.entry(chain.clone()).or_insert(Signed {
                seq: head.seq,
                at: now,
            });
        }
        self.chainer = Chainer::new(heads);
    }

    fn failed(&self, error: &str) {
        self.health.metrics.write_failures.inc();
        self.health.metrics.healthy.set(0);
        if !self.health.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(error, "audit store write failed; retrying");
        }
        self.health.degrade("audit store write failed");
    }

    /// Seals `records` (plus the checkpoints that are `due`) and commits them, retrying until it
    /// succeeds.
    async fn commit(&mut self, records: &[Box<dyn Sealable>], due: Due) {
        let mut backoff = BACKOFF_START;
        let mut with_checkpoints = true;
        loop {
            let started = Instant::now();
            let before: Vec<(String, Head)> = self
                .chainer
                .heads()
                .map(|(c, h)| (c.to_owned(), h))
                .collect();
            let entries: Vec<Entry> = records.iter().map(|r| self.chainer.seal(&**r)).collect();
            let checkpoints = if with_checkpoints {
                self.due_checkpoints(due)
            } else {
                Vec::new()
            };
            if entries.is_empty() && checkpoints.is_empty() {
                return;
            }
            match self.store.append(&entries, &checkpoints).await {
                Ok(()) => {
                    self.committed(entries.len(), &checkpoints, started);
                    return;
                }
                Err(e) => {
                    // Another writer (the operator CLI) may have appended to these chains: then
                    // the stored heads are ahead of ours, and the batch is sealed again after
                    // them at once. Otherwise the same numbers are used again after a pause.
                    let touched: Vec<&str> = entries.iter().map(|e| e.chain.as_str()).collect();
                    match self.store.heads().await {
                        Ok(stored) if moved(&before, &stored, &touched) => {
                            with_checkpoints = true;
                            tracing::info!(
                                "audit chains moved on in the store; sealing the batch again"
                            );
                            self.reset(stored);
                            continue;
                        }
                        _ if !checkpoints.is_empty() => {
                            // Another process may have signed the same head already: the batch
                            // is tried again at once without checkpoints (the next one of each
                            // chain covers these heads through the hash links).
                            self.chainer.restore(before);
                            self.mark_signed(&checkpoints);
                            with_checkpoints = false;
                            if entries.is_empty() {
                                return;
                            }
                        }
                        _ => {
                            self.chainer.restore(before);
                            self.failed(&e.to_string());
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            }
        }
    }

    /// Notes a committed batch of `entries` records and `checkpoints`.
    fn committed(&mut self, entries: usize, checkpoints: &[Checkpoint], started: Instant) {
        self.mark_signed(checkpoints);
        let m = &self.health.metrics;
        m.written.inc_by(entries as u64);
        m.checkpoints.inc_by(checkpoints.len() as u64);
        m.batch_duration.observe(started.elapsed().as_secs_f64());
        m.healthy.set(1);
        if self.health.failing.swap(false, Ordering::Relaxed) {
            tracing::warn!("audit store writes succeed again");
        }
    }

    /// Notes the heads `checkpoints` cover as signed now.
    fn mark_signed(&mut self, checkpoints: &[Checkpoint]) {
        let at = Instant::now();
        for cp in checkpoints {
            self.signed
                .insert(cp.chain.clone(), Signed { seq: cp.seq, at });
        }
    }

    /// Checkpoints of the chains with new entries that are `due`.
    fn due_checkpoints(&self, due: Due) -> Vec<Checkpoint> {
        let now = Instant::now();
        let time = self.clock.now();
        let s = &self.settings;
        self.chainer
            .heads()
            .filter(|(chain, head)| {
                let signed = self.signed.get(*chain).copied();
                let (last, at) = signed.map_or((0, None), |x| (x.seq, Some(x.at)));
                let pending = head.seq.saturating_sub(last);
                let by_time = at.is_none_or(|t| now - t >= s.checkpoint_every);
                let by_count = pending >= s.checkpoint_every_records;
                pending > 0
                    && match due {
                        Due::Time => by_time,
                        Due::CountOrTime => by_time || by_count,
                        Due::All => true,
                    }
            })
            .map(|(chain, head)| {
                self.signer
                    .sign(CheckpointKind::Periodic, chain, head.seq, head.hash, time)
            })
            .collect()
    }
}

/// Which chains get a checkpoint (each only with entries after its last one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// `checkpoint_every` since the chain's last checkpoint (the writer's timer).
    Time,
    /// That, or `checkpoint_every_records` new entries (after a batch).
    CountOrTime,
    /// Every chain (at shutdown).
    All,
}

/// Do the stored heads of the `touched` chains differ from the heads the batch was sealed on?
fn moved(before: &[(String, Head)], stored: &[(String, Head)], touched: &[&str]) -> bool {
    let find = |list: &[(String, Head)], chain: &str| {
        list.iter()
            .find(|(c, _)| c == chain)
            .map(|(_, h)| *h)
            .unwrap_or_default()
    };
    touched.iter().any(|c| find(before, c) != find(stored, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_audit::Digest;

    #[test]
    fn moved_compares_only_touched_chains() {
        let h = |seq| Head {
            seq,
            hash: Digest([seq as u8; 32]),
        };
        let before = vec![("a".to_owned(), h(3)), ("b".to_owned(), h(1))];
        let same = before.clone();
        assert!(!moved(&before, &same, &["a", "b"]));
        let other = vec![("a".to_owned(), h(3)), ("b".to_owned(), h(2))];
        assert!(moved(&before, &other, &["b"]));
        assert!(!moved(&before, &other, &["a"]));
        // A chain the writer has not seen yet, created by someone else.
        let new = vec![("c".to_owned(), h(1))];
        assert!(moved(&before, &new, &["c"]));
    }
}
