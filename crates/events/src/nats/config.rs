//! The NATS backend's configuration.
use std::{fmt, time::Duration};

use super::wire;
use crate::backend::EventError;

/// Where and how the NATS backend keeps events.
#[derive(Clone)]
pub struct NatsConfig {
    /// The server URL(s), comma-separated (`nats://127.0.0.1:4222`, `tls://user:pw@host:4222`).
    /// Credentials in it never appear in errors nor in `Debug`.
    pub url: String,
    /// The stream's name (`PORTCULLIS_EVENTS`).
    pub stream: String,
    /// The first tokens of every subject (`portcullis.events`).
    pub subject_prefix: String,
    /// Events older than this are removed by the server (retention; 7 days). Zero keeps them.
    pub max_age: Duration,
    /// A message id published again within this window is dropped (2 minutes).
    pub duplicate_window: Duration,
    /// Replicas of the stream in a cluster (1).
    pub replicas: usize,
    /// Live events kept for readers that fall behind before they lag (4096).
    pub live_capacity: usize,
    /// Connecting gives up after this long (5 s).
    pub connect_timeout: Duration,
    /// A request or publish ack not answered in this long fails as unavailable (5 s).
    pub request_timeout: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: String::from("nats://127.0.0.1:4222"),
            stream: String::from("PORTCULLIS_EVENTS"),
            subject_prefix: String::from("portcullis.events"),
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            live_capacity: 4096,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl NatsConfig {
    /// The defaults, with the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    pub(super) fn validate(&self) -> Result<(), EventError> {
        let bad = |what: &str| Err(EventError::Backend(format!("nats config: {what}")));
        let name_ok = !self.stream.is_empty()
            && self.stream.len() <= 255
            && !self
                .stream
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c));
        if !name_ok {
            return bad("invalid stream name");
        }
        let prefix_ok = self.subject_prefix.split('.').all(|t| {
            !t.is_empty()
                && !t
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
        });
        if !prefix_ok {
            return bad("invalid subject prefix");
        }
        if !self.max_age.is_zero() && self.duplicate_window > self.max_age {
            return bad("duplicate window longer than max age");
        }
        if self.url.trim().is_empty() {
            return bad("no server url");
        }
        Ok(())
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &wire::redact_url(&self.url))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("max_age", &self.max_age)
            .field("duplicate_window", &self.duplicate_window)
            .field("replicas", &self.replicas)
            .field("live_capacity", &self.live_capacity)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}
