//! Latency histograms and their JSON summary.
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Nanosecond histogram, 1 ns to 100 s, three significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Records `d` (clamped to the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
}

/// Microseconds with one decimal, for JSON.
fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

/// `{"p50_us":…,"p99_us":…,"p999_us":…,"max_us":…,"mean_us":…}`.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"p50_us": null, "p99_us": null, "p999_us": null, "max_us": null, "mean_us": null});
    }
    json!({
        "p50_us": us(h.value_at_quantile(0.50)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p999_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
        "mean_us": (h.mean() / 100.0).round() / 10.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let mut h = new_histogram();
        for i in 1..=100u64 {
            record(&mut h, Duration::from_micros(i));
        }
        let s = summary(&h);
        assert_eq!(s["p50_us"], 50.0);
        assert_eq!(s["p99_us"], 99.0);
        assert_eq!(s["max_us"], 100.0);
    }

    #[test]
    fn empty_summary_is_null() {
        assert!(summary(&new_histogram())["p50_us"].is_null());
    }
}
