//! `[events.webhooks]`: webhook delivery.
use std::time::Duration;

use portcullis_events::webhook::RetrySchedule;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[events.webhooks]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Deliver webhooks from this node (the API to manage endpoints answers either way). The
    /// webhook state lives in `{data_dir}/events.sqlite3` of this node, also with the NATS
    /// backend: run delivery on one node.
    pub enabled: bool,
    /// Accept `http://` endpoint URLs on other hosts than loopback: payloads and signatures
    /// then travel in plaintext. Off by default: `https://` only (and `http://` to
    /// `localhost` / `127.0.0.0/8` / `[::1]`).
    pub danger_allow_http: bool,
    /// Let endpoints reach loopback, private (RFC 1918, CGNAT), link-local (cloud metadata),
    /// unique-local, multicast and other non-public addresses and internal names
    /// (`localhost`, `*.internal`, single labels). Off by default: such URLs are refused
    /// when registered, and every delivery connects only to a public address it resolved
    /// itself (the address actually connected is checked too).
    pub danger_allow_private_webhook_targets: bool,
    /// Endpoints one tenant may have.
    pub max_endpoints_per_tenant: u32,
    /// Deliveries in flight at once, at most.
    pub concurrency: usize,
    /// One attempt's limit: connecting, sending and receiving the response headers.
    pub timeout_seconds: u64,
    /// The ceiling of the first retry's wait (doubled at each retry, full jitter).
    pub retry_base_seconds: u64,
    /// The largest wait between two attempts.
    pub retry_cap_seconds: u64,
    /// A delivery still failing this long after its first attempt is dead-lettered.
    pub retry_window_hours: u64,
    /// How long a rolled secret keeps signing beside the new one, unless the roll says.
    pub secret_overlap_seconds: u64,
    /// How often due deliveries and new events are looked for when nothing woke the worker.
    pub poll_interval_ms: u64,
}

/// The longest overlap a roll may ask for (7 days).
pub const MAX_SECRET_OVERLAP_SECONDS: u64 = 7 * 86_400;

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            danger_allow_http: false,
            danger_allow_private_webhook_targets: false,
            max_endpoints_per_tenant: 20,
            concurrency: 16,
            timeout_seconds: 10,
            retry_base_seconds: 10,
            retry_cap_seconds: 3_600,
            retry_window_hours: 24,
            secret_overlap_seconds: 86_400,
            poll_interval_ms: 1_000,
        }
    }
}

impl WebhooksConfig {
    /// The retry schedule these settings describe.
    pub fn schedule(&self) -> RetrySchedule {
        RetrySchedule {
            base: Duration::from_secs(self.retry_base_seconds),
            cap: Duration::from_secs(self.retry_cap_seconds),
            give_up_after: Duration::from_secs(self.retry_window_hours * 3_600),
        }
    }

    /// Checks ranges; `Err` names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(bool, &'static str); 8] = [
            (
                (1..=1_000).contains(&self.max_endpoints_per_tenant),
                "events.webhooks.max_endpoints_per_tenant must be between 1 and 1000",
            ),
            (
                (1..=1_024).contains(&self.concurrency),
                "events.webhooks.concurrency must be between 1 and 1024",
            ),
            (
                (1..=120).contains(&self.timeout_seconds),
                "events.webhooks.timeout_seconds must be between 1 and 120",
            ),
            (
                (1..=3_600).contains(&self.retry_base_seconds),
                "events.webhooks.retry_base_seconds must be between 1 and 3600",
            ),
            (
                (self.retry_base_seconds..=86_400).contains(&self.retry_cap_seconds),
                "events.webhooks.retry_cap_seconds must be between retry_base_seconds and 86400",
            ),
            (
                (1..=168).contains(&self.retry_window_hours),
                "events.webhooks.retry_window_hours must be between 1 and 168",
            ),
            (
                self.secret_overlap_seconds <= MAX_SECRET_OVERLAP_SECONDS,
                "events.webhooks.secret_overlap_seconds must be at most 604800",
            ),
            (
                (10..=60_000).contains(&self.poll_interval_ms),
                "events.webhooks.poll_interval_ms must be between 10 and 60000",
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(ConfigError::Invalid(why)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_out_of_range_values_are_named() {
        let c = WebhooksConfig::default();
        c.validate().expect("defaults");
        assert_eq!(c.schedule(), RetrySchedule::default());
        let bad = WebhooksConfig {
            retry_cap_seconds: 5,
            ..c.clone()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("retry_cap_seconds")
        );
        let bad = WebhooksConfig {
            concurrency: 0,
            ..c
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("concurrency")
        );
    }
}
