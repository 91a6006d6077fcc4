//! The NATS JetStream backend: events kept in one stream, shared by every node.
//!
//! - **Stream and subjects**: the stream ([`NatsConfig::stream`], `PORTCULLIS_EVENTS`) holds the
//!   subjects `{prefix}.>`; an event goes to `{prefix}.{tenant}.{type}` (`{tenant}` is the tenant
//!   id or `_system`, the type has a dot of its own: `portcullis.events.acme.key.created`). It is
//!   created, or its settings updated, at [`NatsBackend::connect`]: file storage, limits retention
//!   by age ([`NatsConfig::max_age`]), a duplicate window ([`NatsConfig::duplicate_window`]).
//! - **Ids**: an event's id is its stream sequence, given by the publish ack; they increase,
//!   are never reused, and deleted or aged-out sequences are simply skipped by readers.
//! - **Duplicates**: each message carries `Nats-Msg-Id` = [`NewEvent::msg_id`]; the server drops
//!   a message id seen within the duplicate window and acks it as `duplicate`, and `publish`
//!   leaves that event out.
//! - **Replay**: [`read_after`](EventBackend::read_after) reads through a short-lived ephemeral
//!   consumer starting at `after + 1`, filtered by subject to the reader's tenant (and type when
//!   there is one); several types are filtered here (2.9 servers take one filter subject).
//! - **Live**: one task per backend follows the whole stream from the sequence after the last
//!   one at connect, so events from every node reach this node's [`live`](EventBackend::live)
//!   readers, in stream order, with no window between connecting and following.
//! - **Retention**: the server removes events older than `max_age`; [`purge`](EventBackend::purge)
//!   does nothing.
mod config;
mod live;
#[cfg(feature = "conformance")]
pub mod testing;
mod wire;

pub use config::NatsConfig;

use std::{collections::VecDeque, fmt, sync::Arc, time::Duration};

use async_nats::{
    ConnectErrorKind, ConnectOptions, ServerAddr,
    connection::State,
    jetstream::{
        self,
        consumer::{AckPolicy, DeliverPolicy, pull},
        context::{CreateStreamErrorKind, PublishAckFuture, PublishErrorKind},
        message::PublishMessage,
        stream::{DiscardPolicy, RetentionPolicy, StorageType},
    },
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};

use crate::{
    backend::{EventBackend, EventError},
    model::{Event, NewEvent, Scope, TypeSet},
};

/// Publishes of one `publish` call in flight before the oldest ack is awaited.
const PUBLISH_WINDOW: usize = 512;
/// Messages asked for per pull while reading back.
const FETCH_MAX: usize = 1000;
/// Attempts at setting up the stream when the server answers with an internal error.
const STREAM_SETUP_TRIES: u32 = 4;
/// At least this many per pull when the types are filtered here (most may be dropped).
const FETCH_MIN_FILTERED: usize = 200;
/// Pulls in a row that may go unanswered while reading back before the read fails.
const FETCH_RETRIES: u32 = 3;
/// How long the server keeps a read-back consumer nobody uses (it is deleted after the read;
/// this is only for a reader that went away in between).
const READ_CONSUMER_IDLE: Duration = Duration::from_secs(30);

/// How a read through one consumer ended.
enum ReadEnd {
    /// Everything pending was read, or as much as was asked for.
    Done,
    /// A pull went unanswered; `last` is the stream sequence of the last message received.
    Stalled { last: Option<u64> },
}

/// Events in a NATS JetStream stream. See the [module](self) for how.
pub struct NatsBackend {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    prefix: String,
    /// The URL as shown (credentials taken out), and the credentials to scrub from errors.
    url_shown: String,
    secrets: Vec<String>,
    request_timeout: Duration,
    live: broadcast::Sender<Arc<Event>>,
    follower: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBackend")
            .field("url", &self.url_shown)
            .field("stream", &self.stream)
            .field("subject_prefix", &self.prefix)
            .field("connection", &self.client.connection_state())
            .field("live_receivers", &self.live.receiver_count())
            .finish_non_exhaustive()
    }
}

impl Drop for NatsBackend {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl NatsBackend {
    /// Connects, creates the stream or updates its settings, and starts following it for the
    /// live feed. [`EventError::Unavailable`] when the server cannot be reached (or has no
    /// JetStream), [`EventError::Backend`] for a refused configuration or credentials.
    pub async fn connect(config: NatsConfig) -> Result<Self, EventError> {
        config.validate()?;
        let url_shown = wire::redact_url(&config.url);
        let secrets = wire::url_secrets(&config.url);
        let addrs = config
            .url
            .split(',')
            .map(|u| u.trim().parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| EventError::Backend(format!("invalid NATS url {url_shown}")))?;
        // Counts connections, so the live feed follows again at once after a reconnection.
        let (connected, connects) = watch::channel(0u64);
        let connected = Arc::new(connected);
        let options = ConnectOptions::new()
            .name("portcullis-events")
            .event_callback(move |event| {
                let connected = connected.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        connected.send_modify(|n| *n += 1);
                    }
                }
            })
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(config.request_timeout));
        let connecting = options.connect(addrs);
        let client = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                let text = format!("cannot connect to NATS at {url_shown}: {e}");
                let text = wire::scrub(&text, &secrets);
                return Err(match e.kind() {
                    ConnectErrorKind::Authentication
                    | ConnectErrorKind::AuthorizationViolation
                    | ConnectErrorKind::ServerParse
                    | ConnectErrorKind::Tls => EventError::Backend(text),
                    _ => EventError::Unavailable(text),
                });
            }
            Err(_) => {
                return Err(EventError::Unavailable(format!(
                    "cannot connect to NATS at {url_shown}: timed out"
                )));
            }
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            // A full ack window is an error `publish` handles (it awaits its oldest ack), never
            // a wait that could hold permits other publishers need.
            .backpressure_on_inflight(false)
            .build(client.clone());
        let stream_config = jetstream::stream::Config {
            name: config.stream.clone(),
            description: Some(String::from("portcullis events")),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_age: config.max_age,
            duplicate_window: config.duplicate_window,
            num_replicas: config.replicas.max(1),
            ..Default::default()
        };
        // A server-side failure to set up the stream's store (a 5xx JetStream answer, as when
        // the server races its own clean-up of an account's last stream) is tried again a few
        // times before it is an error.
        let mut pause = Duration::from_millis(100);
        let mut tries = 1;
        let created = loop {
            match js.create_or_update_stream(stream_config.clone()).await {
                Err(e)
                    if tries < STREAM_SETUP_TRIES
                        && matches!(e.kind(), CreateStreamErrorKind::JetStream(j) if j.code() >= 500) =>
                {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    tries += 1;
                }
                done => break done,
            }
        };
        let info = created.map_err(|e| {
            let text = wire::scrub(
                &format!("cannot set up stream {} at {url_shown}: {e}", config.stream),
                &secrets,
            );
            match e.kind() {
                CreateStreamErrorKind::JetStreamUnavailable | CreateStreamErrorKind::TimedOut => {
                    EventError::Unavailable(text)
                }
                _ => EventError::Backend(text),
            }
        })?;
        let (live, _) = broadcast::channel(config.live_capacity.max(1));
        let follower = live::Follower {
            js: js.clone(),
            stream: config.stream.clone(),
            prefix: config.subject_prefix.clone(),
            tx: live.clone(),
            connects,
        };
        let follower = tokio::spawn(follower.run(info.state.last_sequence + 1));
        Ok(Self {
            client,
            js,
            stream: config.stream,
            prefix: config.subject_prefix,
            url_shown,
            secrets,
            request_timeout: config.request_timeout,
            live,
            follower,
        })
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// A short-lived pull consumer for one read, from stream sequence `start`.
    async fn read_consumer(
        &self,
        start: u64,
        scope: &Scope,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, EventError> {
        self.js
            .create_consumer_on_stream(
                pull::Config {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    ack_policy: AckPolicy::None,
                    filter_subject: wire::filter_subject(&self.prefix, scope),
                    inactive_threshold: READ_CONSUMER_IDLE,
                    memory_storage: true,
                    num_replicas: 1,
                    ..Default::default()
                },
                self.stream.as_str(),
            )
            .await
            .map_err(|e| self.fail(false, "read: create consumer", e))
    }

    /// Pulls from `consumer` into `out` until its pending count reaches 0, `out` holds `limit`
    /// events, or a pull goes unanswered.
    async fn read_through(
        &self,
        consumer: &jetstream::consumer::Consumer<pull::Config>,
        scope: &Scope,
        limit: usize,
        out: &mut Vec<Event>,
    ) -> Result<ReadEnd, EventError> {
        let typed_here = !scope.types.is_all() && scope.types.iter().nth(1).is_some();
        // A pull that waits this long for its next message is given up.
        let stall = self.request_timeout / (FETCH_RETRIES + 1);
        let mut pending = consumer.cached_info().num_pending;
        let mut last = None;
        while pending > 0 && out.len() < limit {
            let want = limit - out.len();
            let want = if typed_here {
                want.max(FETCH_MIN_FILTERED)
            } else {
                want
            };
            let batch = want
                .min(FETCH_MAX)
                .min(usize::try_from(pending).unwrap_or(usize::MAX));
            let mut messages = consumer
                .fetch()
                .max_messages(batch)
                .messages()
                .await
                .map_err(|e| self.fail(false, "read: fetch", e))?;
            let mut got = 0;
            loop {
                let Ok(next) = tokio::time::timeout(stall, messages.next()).await else {
                    return Ok(ReadEnd::Stalled { last });
                };
                let Some(message) = next else { break };
                let message = message.map_err(|e| self.fail(false, "read", e))?;
                got += 1;
                let info = message.info().map_err(|e| self.fail(false, "read", e))?;
                pending = info.pending;
                let seq = info.stream_sequence;
                last = Some(seq);
                if let Some(e) = wire::decode(seq, &message.payload)
                    && wire::subject_matches(&self.prefix, &message.subject, &e)
                    && scope.matches(&e)
                {
                    out.push(e);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            if got == 0 {
                break;
            }
        }
        Ok(ReadEnd::Done)
    }

    /// An error for `what` failing with `err`: unavailable when `unavailable` says so or the
    /// connection is down; the text without credentials.
    fn fail(&self, unavailable: bool, what: &str, err: impl fmt::Display) -> EventError {
        let text = wire::scrub(&format!("{what}: {err}"), &self.secrets);
        if unavailable || self.client.connection_state() != State::Connected {
            EventError::Unavailable(text)
        } else {
            EventError::Backend(text)
        }
    }

    /// Awaits the ack of `e`'s publish; a stored event goes to `stored`, a duplicate nowhere.
    async fn settle(
        &self,
        e: NewEvent,
        ack: PublishAckFuture,
        stored: &mut Vec<Event>,
    ) -> Result<(), EventError> {
        let ack = ack.await.map_err(|err| {
            let unavailable = matches!(
                err.kind(),
                PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::StreamNotFound
            );
            self.fail(unavailable, "publish", err)
        })?;
        if ack.stream != self.stream {
            return Err(EventError::Backend(format!(
                "publish: stored in stream {} instead of {} (subjects overlap)",
                ack.stream, self.stream
            )));
        }
        if !ack.duplicate {
            stored.push(e.into_event(ack.sequence));
        }
        Ok(())
    }
}

#[async_trait]
impl EventBackend for NatsBackend {
    /// Sends every event, then awaits the acks in order (at most 512 in flight), so a batch
    /// costs about one round trip, not one per event. On an error some of the events may be
    /// stored: publishing the batch again is safe within the duplicate window.
    async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, EventError> {
        let mut prepared = Vec::with_capacity(events.len());
        for e in events {
            if e.msg_id.is_empty() || e.msg_id.chars().any(char::is_control) {
                return Err(EventError::Backend(String::from(
                    "publish: message id empty or with control characters",
                )));
            }
            let body = wire::encode(&e).map_err(|err| self.fail(false, "publish: encode", err))?;
            prepared.push((wire::subject(&self.prefix, &e), Bytes::from(body), e));
        }
        let mut stored = Vec::with_capacity(prepared.len());
        let mut in_flight: VecDeque<(NewEvent, PublishAckFuture)> = VecDeque::new();
        for (subject, body, e) in prepared {
            let deadline = tokio::time::Instant::now() + self.request_timeout;
            let ack = loop {
                let message = PublishMessage::build()
                    .payload(body.clone())
                    .message_id(&e.msg_id);
                match self.js.send_publish(subject.clone(), message).await {
                    Ok(ack) => break ack,
                    // The connection's ack window is full: free a place with our oldest ack,
                    // or (none of ours in flight) wait for other publishers to free one.
                    Err(err) if err.kind() == PublishErrorKind::MaxAckPending => {
                        if let Some((old, ack)) = in_flight.pop_front() {
                            self.settle(old, ack, &mut stored).await?;
                        } else if tokio::time::Instant::now() >= deadline {
                            return Err(self.fail(true, "publish", err));
                        } else {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                    Err(err) => {
                        let unavailable = matches!(
                            err.kind(),
                            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                        );
                        return Err(self.fail(unavailable, "publish", err));
                    }
                }
            };
            in_flight.push_back((e, ack));
            if in_flight.len() >= PUBLISH_WINDOW
                && let Some((old, ack)) = in_flight.pop_front()
            {
                self.settle(old, ack, &mut stored).await?;
            }
        }
        while let Some((old, ack)) = in_flight.pop_front() {
            self.settle(old, ack, &mut stored).await?;
        }
        Ok(stored)
    }

    /// Reads through an ephemeral consumer from `after + 1`, pulling what is stored now (no
    /// wait for more: the consumer's pending count tells when the end is reached).
    ///
    /// A pull the server leaves unanswered (a 2.9 server does, now and then, after an interior
    /// delete) is given up after a quarter of the request timeout and the read goes on through
    /// a new consumer from the sequence after the last one received, so a message the old pull
    /// might still deliver is neither lost nor read twice; after [`FETCH_RETRIES`] such pulls
    /// the read fails as unavailable.
    async fn read_after(
        &self,
        after: u64,
        scope: &Scope,
        limit: usize,
    ) -> Result<Vec<Event>, EventError> {
        if limit == 0 || scope.types == TypeSet::none() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut next = after.saturating_add(1);
        let mut stalls = 0;
        loop {
            let consumer = self.read_consumer(next, scope).await?;
            let name = consumer.cached_info().name.clone();
            let read = self.read_through(&consumer, scope, limit, &mut out).await;
            // The consumer is not needed any more; deleting it need not hold the reader up.
            let js = self.js.clone();
            let stream = self.stream.clone();
            tokio::spawn(async move {
                let _ = js.delete_consumer_from_stream(name, stream).await;
            });
            match read? {
                ReadEnd::Done => return Ok(out),
                ReadEnd::Stalled { last } => {
                    stalls += 1;
                    if stalls > FETCH_RETRIES {
                        return Err(self.fail(true, "read", "timed out"));
                    }
                    tracing::warn!(
                        stream = %self.stream,
                        after,
                        "events read-back: a pull went unanswered; reading on from a new consumer"
                    );
                    next = last.map_or(next, |seq| seq.saturating_add(1));
                }
            }
        }
    }

    fn live(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    async fn last_id(&self) -> Result<u64, EventError> {
        let stream = self
            .js
            .get_stream(self.stream.as_str())
            .await
            .map_err(|e| self.fail(false, "last id", e))?;
        Ok(stream.cached_info().state.last_sequence)
    }

    /// Removes nothing and returns 0: the stream's `max_age` retention removes old events on
    /// the server by itself (a purge by time has no cheap form on a 2.9 server).
    async fn purge(&self, _before: OffsetDateTime) -> Result<u64, EventError> {
        Ok(0)
    }
}
