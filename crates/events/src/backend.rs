//! The contract of an event backend, and the replay-then-live subscription built on it.
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};

use crate::model::{Event, NewEvent, Scope};

/// A backend failed. The text is for logs, never for clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("event backend: {0}")]
    Backend(String),
    #[error("event backend unavailable: {0}")]
    Unavailable(String),
}

/// Where events are kept and how they reach live readers.
///
/// Every backend runs the same conformance tests (`tests` of `portcullis-sqlite` and the NATS
/// backend): ids are positive and increase in publish order; an event returned by `publish` is
/// durable; a message id published again is dropped; `read_after` returns exactly the stored
/// events after an id that a scope sees; `live` carries every event stored after it was called,
/// in id order, whichever node or process published it.
#[async_trait]
pub trait EventBackend: Send + Sync + std::fmt::Debug {
    /// Stores `events` durably and in order and hands them to the live feed. Returns the events
    /// stored with their ids; an event whose message id was published before is left out.
    async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, EventError>;

    /// At most `limit` stored events with an id greater than `after` that `scope` sees, oldest
    /// first.
    async fn read_after(
        &self,
        after: u64,
        scope: &Scope,
        limit: usize,
    ) -> Result<Vec<Event>, EventError>;

    /// The live feed: every event stored from this call on, of every tenant, in id order.
    fn live(&self) -> broadcast::Receiver<Arc<Event>>;

    /// The id of the newest stored event (0 when there is none).
    async fn last_id(&self) -> Result<u64, EventError>;

    /// Removes the events older than `before` (retention); returns how many went. Ids are never
    /// reused.
    async fn purge(&self, before: OffsetDateTime) -> Result<u64, EventError>;
}

/// What a subscription hands its reader.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Event(Arc<Event>),
    /// The reader fell behind its buffer: it must reconnect with the id of the last event it
    /// got (nothing is lost: the events after it are replayed). The last delivery.
    Overflow {
        last_id: u64,
    },
    /// The backend failed while replaying: the reader should reconnect later with its last id.
    Failed {
        last_id: u64,
    },
}

/// Events read from the backend per replay query.
pub const REPLAY_PAGE: usize = 500;

/// A reader's stream of events: those after `after` still stored, then live ones, with no gap
/// and no duplicate. Dropping it stops its task.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Delivery>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// The next delivery; `None` after an overflow or failure was delivered.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes `scope` to `backend`: replays the stored events after `after` (when given), then
/// follows the live feed. At most `buffer` deliveries wait for the reader; when the reader lets
/// them pile up beyond that, it gets [`Delivery::Overflow`] and the subscription ends, so one
/// slow reader never slows the server down nor makes it grow.
///
/// No gap, no duplicate: the live feed is joined *before* the replay reads, and a live event is
/// passed on only when its id is above the last one delivered. If this subscription's own view
/// of the live feed falls behind (the shared feed is bounded too), it reads the missed events
/// back from the backend.
pub async fn subscribe(
    backend: Arc<dyn EventBackend>,
    scope: Scope,
    after: Option<u64>,
    buffer: usize,
) -> Subscription {
    let buffer = buffer.max(1);
    // One place more than the buffer, kept for the overflow notice.
    let (tx, rx) = mpsc::channel(buffer + 1);
    // A reader without a position starts after the newest event stored *before* it joins the
    // live feed — taken here, before the caller answers its reader, so "from now" means from
    // the subscription: what is stored between the two reads is replayed, so nothing falls in
    // between, and if its view of the live feed falls behind later there is a position to read
    // back from.
    let start = match after {
        Some(a) => Ok(a),
        None => backend.last_id().await,
    };
    let live = backend.live();
    let task = tokio::spawn(async move {
        match start {
            Ok(start) => run(backend, scope, start, live, tx).await,
            Err(_) => {
                let _ = tx.try_send(Delivery::Failed { last_id: 0 });
            }
        }
    });
    Subscription { rx, task }
}

enum Stop {
    Overflow,
    Closed,
}

/// Moves `cursor` past `e`; whether the reader wants `e` (new, and in its scope).
fn wanted(scope: &Scope, cursor: &mut u64, e: &Event) -> bool {
    if e.id <= *cursor {
        return false;
    }
    *cursor = e.id;
    scope.matches(e)
}

/// Passes `e` on when it is new and in scope; `Err` when the reader is gone or full.
fn offer(
    tx: &mpsc::Sender<Delivery>,
    scope: &Scope,
    cursor: &mut u64,
    e: Arc<Event>,
) -> Result<(), Stop> {
    if !wanted(scope, cursor, &e) {
        return Ok(());
    }
    if tx.capacity() <= 1 {
        return Err(if tx.is_closed() {
            Stop::Closed
        } else {
            Stop::Overflow
        });
    }
    tx.try_send(Delivery::Event(e)).map_err(|_| Stop::Closed)
}

/// How long a replay waits for its reader to make room before it gives up on it (overflow).
pub const REPLAY_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Passes `e` on when it is new and in scope, waiting (up to [`REPLAY_STALL`]) for room in the
/// reader's buffer: a replay goes at the reader's pace, while the live feed never waits.
async fn offer_waiting(
    tx: &mpsc::Sender<Delivery>,
    scope: &Scope,
    cursor: &mut u64,
    e: Arc<Event>,
) -> Result<(), Stop> {
    if !wanted(scope, cursor, &e) {
        return Ok(());
    }
    // Two places: one for the event, one kept free for the overflow notice.
    match tokio::time::timeout(REPLAY_STALL, tx.reserve_many(2)).await {
        Ok(Ok(mut permits)) => {
            if let Some(p) = permits.next() {
                p.send(Delivery::Event(e));
            }
            Ok(())
        }
        Ok(Err(_)) => Err(Stop::Closed),
        Err(_) => Err(Stop::Overflow),
    }
}

/// Replays the stored events after `cursor`, at the reader's pace; `Ok(false)` when the backend
/// failed (the reader was told).
async fn replay(
    backend: &dyn EventBackend,
    tx: &mpsc::Sender<Delivery>,
    scope: &Scope,
    cursor: &mut u64,
    delivered: &mut u64,
) -> Result<bool, Stop> {
    loop {
        let page = match backend.read_after(*cursor, scope, REPLAY_PAGE).await {
            Ok(p) => p,
            Err(_) => {
                let _ = tx.try_send(Delivery::Failed {
                    last_id: *delivered,
                });
                return Ok(false);
            }
        };
        let full = page.len() >= REPLAY_PAGE;
        for e in page {
            let id = e.id;
            offer_waiting(tx, scope, cursor, Arc::new(e)).await?;
            *delivered = id;
        }
        if !full {
            return Ok(true);
        }
    }
}

async fn run(
    backend: Arc<dyn EventBackend>,
    scope: Scope,
    start: u64,
    mut live: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Delivery>,
) {
    // `cursor`: the highest id looked at; `delivered`: the last id the reader got or skipped
    // as out of scope (what it reconnects with).
    let mut cursor = start;
    let mut delivered = cursor;
    let outcome: Result<(), Stop> = async {
        if !replay(backend.as_ref(), &tx, &scope, &mut cursor, &mut delivered).await? {
            return Ok(());
        }
        loop {
            match live.recv().await {
                Ok(e) => {
                    let id = e.id;
                    offer(&tx, &scope, &mut cursor, e)?;
                    delivered = delivered.max(id);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed some of the shared feed: read them back, then go on live.
                    if !replay(backend.as_ref(), &tx, &scope, &mut cursor, &mut delivered).await? {
                        return Ok(());
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
    .await;
    if let Err(Stop::Overflow) = outcome {
        let _ = tx.try_send(Delivery::Overflow { last_id: delivered });
    }
}
