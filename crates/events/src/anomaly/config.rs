//! The detector's configuration (`[anomaly]` in the server's TOML file).
use serde::{Deserialize, Serialize};

/// What the anomaly detector watches for and how eagerly. Every field has a default; unknown
/// fields are refused. Check a value read from a file with [`AnomalyConfig::validate`]
/// ([`Detector::new`](super::Detector::new) does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Whether the detector runs at all (`true`). Off, every `observe_*` returns at once.
    pub enabled: bool,
    /// The length of a counting window in seconds (`60`, 1 to 86 400). Windows are aligned to
    /// the Unix epoch, so every node counts the same windows. Request rates, failure bursts and
    /// rate-limited requests are counted per window.
    pub window_seconds: u64,
    /// The weight of the newest window in the rate baseline, an exponentially weighted moving
    /// average (`0.3`, above 0 and at most 1).
    pub ewma_alpha: f64,
    /// A window's requests above `spike_factor` × the baseline are a spike (`5.0`, at least 1).
    pub spike_factor: f64,
    /// No spike is raised for a window of fewer requests than this (`100`).
    pub min_requests: u64,
    /// No spike is raised until the baseline has this many whole windows (`3`). A key's (or
    /// tenant's) first window is partial and is not part of its baseline.
    pub warmup_windows: u32,
    /// An IP (an IPv6 client's /64) not seen for a key in this many days is new (`30`, at least
    /// 1). A key unused for this long is forgotten.
    pub new_ip_days: u32,
    /// For this long after the detector first saw a key, its IPs are learnt, never raised
    /// (`3600`). A key's very first IP is never raised either.
    pub new_ip_learning_seconds: u64,
    /// At most this many IPs are remembered per key; a new one beyond it replaces the one seen
    /// longest ago (`64`, 1 to 4096).
    pub max_ips_per_key: usize,
    /// This many failures in one window, for one key or from one IP, are a burst (`20`, at least
    /// 1).
    pub failure_burst_threshold: u32,
    /// An episode (a spike, a burst, new IPs of a key, uses of a revoked key) ends when its
    /// condition has not been seen for this many seconds (`600`, at least `window_seconds`);
    /// one event is raised per episode.
    pub debounce_seconds: u64,
    /// At most this many keys, and separately this many IPs and tenants, are tracked
    /// (`100000`, 1 to 10 000 000). When full, the ones seen longest ago are forgotten.
    pub max_tracked: usize,
    /// At most this many raised events wait for [`Detector::drain`](super::Detector::drain)
    /// (`10000`); more are counted as dropped.
    pub max_queued: usize,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_seconds: 60,
            ewma_alpha: 0.3,
            spike_factor: 5.0,
            min_requests: 100,
            warmup_windows: 3,
            new_ip_days: 30,
            new_ip_learning_seconds: 3600,
            max_ips_per_key: 64,
            failure_burst_threshold: 20,
            debounce_seconds: 600,
            max_tracked: 100_000,
            max_queued: 10_000,
        }
    }
}

/// A configuration value is out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnomalyConfigError {
    #[error("anomaly.{field}: {expected}")]
    OutOfRange {
        field: &'static str,
        expected: &'static str,
    },
}

impl AnomalyConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), AnomalyConfigError> {
        let checks: [(bool, &'static str, &'static str); 10] = [
            (
                (1..=86_400).contains(&self.window_seconds),
                "window_seconds",
                "1 to 86400",
            ),
            (
                self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0,
                "ewma_alpha",
                "above 0 and at most 1",
            ),
            (
                self.spike_factor.is_finite() && self.spike_factor >= 1.0,
                "spike_factor",
                "a number of at least 1",
            ),
            (self.new_ip_days >= 1, "new_ip_days", "at least 1"),
            (
                (1..=4096).contains(&self.max_ips_per_key),
                "max_ips_per_key",
                "1 to 4096",
            ),
            (
                self.failure_burst_threshold >= 1,
                "failure_burst_threshold",
                "at least 1",
            ),
            (
                self.debounce_seconds >= self.window_seconds,
                "debounce_seconds",
                "at least window_seconds",
            ),
            (
                (1..=10_000_000).contains(&self.max_tracked),
                "max_tracked",
                "1 to 10000000",
            ),
            (self.max_queued >= 1, "max_queued", "at least 1"),
            (
                self.new_ip_learning_seconds <= 365 * 86_400,
                "new_ip_learning_seconds",
                "at most a year",
            ),
        ];
        match checks.into_iter().find(|(ok, _, _)| !ok) {
            Some((_, field, expected)) => Err(AnomalyConfigError::OutOfRange { field, expected }),
            None => Ok(()),
        }
    }
}

/// The configuration in the units the detector counts in (milliseconds).
#[derive(Debug, Clone, Copy)]
pub(super) struct Params {
    pub(super) window_ms: u64,
    pub(super) alpha: f64,
    pub(super) spike_factor: f64,
    pub(super) min_requests: u64,
    pub(super) warmup_windows: u32,
    pub(super) ip_memory_ms: u64,
    pub(super) learning_ms: u64,
    pub(super) max_ips: usize,
    pub(super) burst_threshold: u32,
    pub(super) debounce_ms: u64,
}

impl Params {
    pub(super) fn new(c: &AnomalyConfig) -> Self {
        Self {
            window_ms: c.window_seconds * 1000,
            alpha: c.ewma_alpha,
            spike_factor: c.spike_factor,
            min_requests: c.min_requests,
            warmup_windows: c.warmup_windows,
            ip_memory_ms: u64::from(c.new_ip_days) * 86_400_000,
            learning_ms: c.new_ip_learning_seconds * 1000,
            max_ips: c.max_ips_per_key,
            burst_threshold: c.failure_burst_threshold,
            debounce_ms: c.debounce_seconds * 1000,
        }
    }

    /// A key unused this long is forgotten: its IPs would all be new again anyway.
    pub(super) fn key_idle_ms(&self) -> u64 {
        self.ip_memory_ms.max(self.debounce_ms)
    }

    /// An IP without failures this long is forgotten: its window and its episode are over.
    pub(super) fn ip_idle_ms(&self) -> u64 {
        self.window_ms.max(self.debounce_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_fields_refused() {
        assert_eq!(AnomalyConfig::default().validate(), Ok(()));
        let c: AnomalyConfig = serde_json::from_str(r#"{"spike_factor": 8.0}"#).unwrap();
        assert_eq!(c.spike_factor, 8.0);
        assert_eq!(c.window_seconds, 60);
        assert!(serde_json::from_str::<AnomalyConfig>(r#"{"spike": 8.0}"#).is_err());
        let bad = AnomalyConfig {
            ewma_alpha: 0.0,
            ..AnomalyConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(AnomalyConfigError::OutOfRange {
                field: "ewma_alpha",
                ..
            })
        ));
        let bad = AnomalyConfig {
            debounce_seconds: 10,
            ..AnomalyConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = AnomalyConfig {
            spike_factor: f64::NAN,
            ..AnomalyConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
