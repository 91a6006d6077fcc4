//! Test support for the NATS backend (feature `conformance`), shared by the tests of every crate
//! that runs against a real NATS server: where the server is (`PORTCULLIS_NATS_URL`, default
//! `nats://127.0.0.1:4222`), whether it must be there (`PORTCULLIS_REQUIRE_SERVICES=1`, set by
//! CI), a configuration with a stream and subject prefix of its own, and a guard deleting that
//! stream when the test ends (also when it panics).
use std::time::Duration;

use super::NatsConfig;

/// The NATS server tests use.
pub fn url() -> String {
    std::env::var("PORTCULLIS_NATS_URL").unwrap_or_else(|_| String::from("nats://127.0.0.1:4222"))
}

/// Must tests fail (rather than skip) when the server is missing?
pub fn services_required() -> bool {
    std::env::var("PORTCULLIS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A configuration of its own: a fresh stream and subject prefix, so tests run in parallel.
pub fn fresh_config() -> NatsConfig {
    let id = ulid::Ulid::new();
    NatsConfig {
        stream: format!("PORTCULLIS_EVENTS_TEST_{id}"),
        subject_prefix: format!("pctest.{id}"),
        max_age: Duration::from_secs(3600),
        connect_timeout: Duration::from_secs(2),
        ..NatsConfig::new(url())
    }
}

/// Deletes the stream of its configuration when dropped.
pub struct StreamGuard(pub NatsConfig);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let config = self.0.clone();
        // A runtime of its own on a thread of its own: this may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(client) = async_nats::connect(config.url.as_str()).await {
                    let js = async_nats::jetstream::new(client);
                    let _ = js.delete_stream(config.stream.as_str()).await;
                }
            });
        })
        .join();
    }
}

impl std::fmt::Debug for StreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StreamGuard").field(&self.0.stream).finish()
    }
}
