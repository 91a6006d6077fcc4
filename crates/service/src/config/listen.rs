//! `[connections]` and `[gateway.connections]`: what one listener allows a client connection —
//! how long it may take to send a request head, stay idle or stall a body, how many headers of
//! what size, and how many connections may be open in all and per client address.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The connection limits of one listener (read at start; a reload does not change them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// A request head (request line and headers) must arrive whole within this time, counted
    /// from the connection's accept or from the first byte after an idle pause (milliseconds).
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection with no request in progress is closed after this (milliseconds).
    pub idle_timeout_ms: u64,
    /// A request body that sends nothing for this long is cut (milliseconds between chunks).
    pub body_read_timeout_ms: u64,
    /// Open connections of the listener, at most; beyond, a new one is closed at once.
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 /64 counts as one), at most.
    pub max_connections_per_address: usize,
    /// Header fields in a request, at most (431 beyond).
    pub max_headers: usize,
    /// Bytes of a request head, at most (431 beyond).
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 30_000,
            max_connections: 4_096,
            max_connections_per_address: 128,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// The smallest head limit hyper's parser accepts as a read buffer.
const MIN_HEADER_BYTES: usize = 8 * 1024;

impl ConnectionLimits {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// Checks ranges; `Err` names the offending key (`section` is `connections` or
    /// `gateway.connections`).
    pub fn validate(&self, section: &'static str) -> Result<(), ConfigError> {
        let bad = |what: &'static str| ConfigError::OutOfRange(format!("{section}.{what}"));
        if !(100..=600_000).contains(&self.header_read_timeout_ms) {
            return Err(bad("header_read_timeout_ms must be between 100 and 600000"));
        }
        if !(100..=3_600_000).contains(&self.idle_timeout_ms) {
            return Err(bad("idle_timeout_ms must be between 100 and 3600000"));
        }
        if !(100..=3_600_000).contains(&self.body_read_timeout_ms) {
            return Err(bad("body_read_timeout_ms must be between 100 and 3600000"));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(bad("max_connections must be between 1 and 1000000"));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_address) {
            return Err(bad(
                "max_connections_per_address must be between 1 and max_connections",
            ));
        }
        if !(8..=1_000).contains(&self.max_headers) {
            return Err(bad("max_headers must be between 8 and 1000"));
        }
        if !(MIN_HEADER_BYTES..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err(bad("max_header_bytes must be between 8192 and 1048576"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounded() {
        let d = ConnectionLimits::default();
        assert!(d.validate("connections").is_ok());
        assert!(d.max_connections_per_address < d.max_connections);
        for bad in [
            ConnectionLimits {
                header_read_timeout_ms: 0,
                ..d.clone()
            },
            ConnectionLimits {
                max_connections_per_address: d.max_connections + 1,
                ..d.clone()
            },
            ConnectionLimits {
                max_header_bytes: 1024,
                ..d.clone()
            },
            ConnectionLimits {
                max_headers: 0,
                ..d.clone()
            },
        ] {
            let e = bad.validate("gateway.connections").expect_err("refused");
            assert!(e.to_string().contains("gateway.connections."), "{e}");
        }
    }
}
