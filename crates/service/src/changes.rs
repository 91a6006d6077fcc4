//! Following the store's change feed ([`portcullis_store::ChangeFeed`]): every
//! `cache.change_poll_ms` the watcher reads the newest change id (one indexed read); when it
//! moved, it reads the entries after the last one it saw and hands each to its sinks — the key
//! cache drops what they name — then tells subscribers (open SSE streams re-check their admin
//! key). Changes made by any writer of the store reach this server that way: the operator CLI
//! on the same data directory today, another node later (a feed relayed between nodes is one
//! more [`ChangeFeed`]).
use std::{sync::Arc, time::Duration};

use portcullis_store::{Change, ChangeFeed, ChangeTarget, StoreError};
use tokio::sync::watch;

use crate::cache::KeyCache;

/// What is told of each change.
pub trait ChangeSink: Send + Sync {
    /// One change, in feed order.
    fn apply(&self, target: &ChangeTarget);
    /// Entries may have been missed: forget everything that could be stale.
    fn reset(&self);
}

impl ChangeSink for KeyCache {
    fn apply(&self, target: &ChangeTarget) {
        match target {
            ChangeTarget::Key { tenant, id } => self.invalidate_key(tenant, id),
            ChangeTarget::Tenant(t) => self.invalidate_tenant(t),
            ChangeTarget::AdminKey { id } => self.invalidate_admin(id),
        }
    }

    fn reset(&self) {
        self.invalidate_all();
    }
}

/// The count of feed reads that applied changes; subscribers wake when it moves.
#[derive(Debug, Clone)]
pub struct ChangeSignal(Arc<watch::Sender<u64>>);

impl Default for ChangeSignal {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl ChangeSignal {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Entries read per page.
const PAGE: u32 = 500;

/// A reader of a change feed: where it stands, and whom it tells.
pub struct ChangeWatcher {
    feed: Arc<dyn ChangeFeed>,
    sink: Arc<dyn ChangeSink>,
    signal: ChangeSignal,
    /// The last entry applied; `None` until the first read of the newest id succeeded.
    last: Option<u64>,
}

impl std::fmt::Debug for ChangeWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeWatcher")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl ChangeWatcher {
    pub fn new(feed: Arc<dyn ChangeFeed>, sink: Arc<dyn ChangeSink>, signal: ChangeSignal) -> Self {
        Self {
            feed,
            sink,
            signal,
            last: None,
        }
    }

    /// Reads the feed once and applies what is new; returns how many entries it applied. The
    /// first read notes the newest id and drops whatever was cached before it (it may predate a
    /// change this reader will never see).
    pub async fn poll(&mut self) -> Result<usize, StoreError> {
        let newest = self.feed.latest_change().await?;
        let Some(mut last) = self.last else {
            self.sink.reset();
            self.last = Some(newest);
            return Ok(0);
        };
        if newest == last {
            return Ok(0);
        }
        if newest < last {
            // The feed went backwards (a restored database): start again from its newest entry.
            self.sink.reset();
            self.last = Some(newest);
            self.signal.bump();
            return Ok(0);
        }
        let mut applied = 0;
        loop {
            let page: Vec<Change> = self.feed.changes_after(last, PAGE).await?;
            if page.first().is_some_and(|c| c.id != last + 1) {
                // Entries were pruned (or ids skipped) since the last read: some may be missed.
                self.sink.reset();
            }
            for c in &page {
                self.sink.apply(&c.target);
                last = c.id;
            }
            applied += page.len();
            self.last = Some(last);
            if page.len() < PAGE as usize {
                break;
            }
        }
        self.signal.bump();
        Ok(applied)
    }

    /// Polls every `every` until the task is aborted; a failed read is logged and retried.
    pub fn spawn(mut self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match self.poll().await {
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!(error = %e, "cannot read the change feed; cached keys may be stale until the cache TTL");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

/// Follows the store's change feed into `cache` and `signal` every `poll_ms` milliseconds.
pub fn spawn(
    feed: Arc<dyn ChangeFeed>,
    cache: KeyCache,
    signal: ChangeSignal,
    poll_ms: u64,
) -> tokio::task::JoinHandle<()> {
    let sink: Arc<dyn ChangeSink> = Arc::new(cache);
    let every = Duration::from_millis(poll_ms.max(1));
    ChangeWatcher::new(feed, sink, signal).spawn(every)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct Feed(Mutex<Vec<Change>>);

    #[async_trait::async_trait]
    impl ChangeFeed for Feed {
        async fn latest_change(&self) -> portcullis_store::Result<u64> {
            Ok(self.0.lock().expect("lock").last().map_or(0, |c| c.id))
        }

        async fn changes_after(
            &self,
            after: u64,
            limit: u32,
        ) -> portcullis_store::Result<Vec<Change>> {
            let all = self.0.lock().expect("lock");
            Ok(all
                .iter()
                .filter(|c| c.id > after)
                .take(limit as usize)
                .cloned()
                .collect())
        }
    }

    #[derive(Default)]
    struct Sink(Mutex<Vec<String>>);

    impl ChangeSink for Sink {
        fn apply(&self, target: &ChangeTarget) {
            let what = match target {
                ChangeTarget::AdminKey { id } => id.clone(),
                other => format!("{other:?}"),
            };
            self.0.lock().expect("lock").push(what);
        }

        fn reset(&self) {
            self.0.lock().expect("lock").push("reset".into());
        }
    }

    fn admin(id: u64) -> Change {
        Change {
            id,
            target: ChangeTarget::AdminKey {
                id: format!("a{id}"),
            },
        }
    }

    #[tokio::test]
    async fn applies_new_entries_in_order_and_resets_on_a_gap_or_a_rewind() {
        let feed = Arc::new(Feed::default());
        feed.0.lock().expect("lock").extend([admin(1), admin(2)]);
        let sink = Arc::new(Sink::default());
        let signal = ChangeSignal::default();
        let mut rx = signal.subscribe();
        let mut w = ChangeWatcher::new(feed.clone(), sink.clone(), signal);
        let seen = |s: &Sink| std::mem::take(&mut *s.0.lock().expect("lock"));

        assert_eq!(
            w.poll().await.expect("poll"),
            0,
            "the first read notes where it is"
        );
        assert_eq!(seen(&sink), vec!["reset"]);
        assert_eq!(w.poll().await.expect("poll"), 0);
        assert!(!rx.has_changed().expect("open"));

        feed.0.lock().expect("lock").extend([admin(3), admin(4)]);
        assert_eq!(w.poll().await.expect("poll"), 2);
        assert_eq!(seen(&sink), vec!["a3", "a4"]);
        assert!(rx.has_changed().expect("open"), "subscribers are told");
        rx.mark_unchanged();

        // Entries 5 and 6 were pruned before this reader saw them.
        feed.0.lock().expect("lock").extend([admin(7)]);
        assert_eq!(w.poll().await.expect("poll"), 1);
        assert_eq!(seen(&sink), vec!["reset", "a7"]);

        // More than a page at once.
        feed.0
            .lock()
            .expect("lock")
            .extend((8..8 + u64::from(PAGE) + 3).map(admin));
        assert_eq!(w.poll().await.expect("poll"), PAGE as usize + 3);
        assert_eq!(seen(&sink).len(), PAGE as usize + 3);

        // A restored (older) database.
        feed.0.lock().expect("lock").truncate(1);
        assert_eq!(w.poll().await.expect("poll"), 0);
        assert_eq!(seen(&sink), vec!["reset"]);
    }
}
