//! The live feed of a NATS backend: one task per backend follows the whole stream with an
//! ordered consumer and hands every event, in stream order, to the backend's broadcast channel.
//! Events published by other nodes arrive the same way as this node's own.
use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::DeliverPolicy,
    consumer::pull::{OrderedConfig, OrderedError},
};
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};

use super::wire;
use crate::model::Event;

/// The first wait before following again after a failure; it doubles up to [`MAX_BACKOFF`]
/// while the failures go on without an event in between.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the follower needs.
pub(super) struct Follower {
    pub(super) js: jetstream::Context,
    pub(super) stream: String,
    pub(super) prefix: String,
    pub(super) tx: broadcast::Sender<Arc<Event>>,
    /// Counts the client's (re)connections.
    pub(super) connects: watch::Receiver<u64>,
}

impl Follower {
    /// Follows the stream from sequence `next` on, for ever (the backend aborts the task when
    /// it is dropped). After a failure it starts again at the sequence after the last one it
    /// saw, so nothing is skipped and nothing is sent twice.
    pub(super) async fn run(mut self, mut next: u64) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let before = next;
            // The error is not logged (this crate has no logger); the feed retries quietly and
            // subscribers that fall behind read the missed events back from the stream.
            let _ = self.follow(&mut next).await;
            if next > before {
                backoff = MIN_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One ordered consumer from `next` until it fails or the client connects again. The
    /// ordered consumer re-creates itself on a gap, but after a reconnection it may take many
    /// seconds to find out that its consumer is gone (a restarted server keeps no ephemeral
    /// consumer), so a reconnection starts a new one at once. Should the consumer ever go back
    /// (it restarts from the stream's start when it failed before its first message), this
    /// returns too and the next round starts again from `next`.
    async fn follow(&mut self, next: &mut u64) -> Result<(), BoxError> {
        self.connects.borrow_and_update();
        let consumer = self
            .js
            .create_consumer_on_stream(
                OrderedConfig {
                    filter_subject: format!("{}.>", self.prefix),
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: *next,
                    },
                    ..Default::default()
                },
                self.stream.as_str(),
            )
            .await?;
        let name = consumer.cached_info().name.clone();
        let mut messages = consumer.messages().await?;
        let outcome = loop {
            let message = tokio::select! {
                m = messages.next() => m,
                _ = self.connects.changed() => break Err("reconnected".into()),
            };
            let Some(message) = message else {
                break Ok(());
            };
            match self.pass_on(next, message) {
                Ok(()) => {}
                Err(e) => break Err(e),
            }
        };
        drop(messages);
        // The consumer may still be on the server (a short disconnection): remove it rather
        // than let it idle out.
        let js = self.js.clone();
        let stream = self.stream.clone();
        tokio::spawn(async move {
            let _ = js.delete_consumer_from_stream(name, stream).await;
        });
        outcome
    }

    /// Sends the event of `message` to the live readers, if it is the next one.
    fn pass_on(
        &self,
        next: &mut u64,
        message: Result<jetstream::Message, OrderedError>,
    ) -> Result<(), BoxError> {
        let message = message?;
        let seq = message.info()?.stream_sequence;
        if seq < *next {
            return Err("the ordered consumer went back".into());
        }
        *next = seq + 1;
        if let Some(e) = wire::decode(seq, &message.payload)
            && wire::subject_matches(&self.prefix, &message.subject, &e)
        {
            // No receiver at the moment is not an error: the event is durable.
            let _ = self.tx.send(Arc::new(e));
        }
        Ok(())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
