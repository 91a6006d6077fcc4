//! Anomaly detection on the request path: the gateway and the verify API tell the
//! [`Detector`] what they decided (a few counter updates per request); once a second a task
//! closes its windows and publishes what it raised (`anomaly.*`, `auth.failure_burst`,
//! `ratelimit.exceeded`), one event per episode.
use std::{net::IpAddr, sync::Arc, time::Duration};

use portcullis_core::{decision::DecisionCode, tenant::TenantId};
use portcullis_events::anomaly::unix_millis;
pub use portcullis_events::anomaly::{AnomalyConfig, Detector};

use crate::events::Events;

/// How often windows are closed and raised events published.
pub const TICK: Duration = Duration::from_secs(1);

/// The detector of `config`, when events and detection are both on.
pub fn detector(config: &super::EventsConfig) -> Option<Arc<Detector>> {
    if !config.enabled || !config.anomaly.enabled {
        return None;
    }
    // The configuration was validated at load; a detector that cannot be built is off.
    Detector::new(config.anomaly.clone()).ok().map(Arc::new)
}

/// What a request path tells the detector about one decision, by the key's own facts (never
/// by what the client claimed).
pub fn observe(
    d: &Detector,
    now: time::OffsetDateTime,
    key: Option<(&TenantId, &str)>,
    ip: Option<IpAddr>,
    code: DecisionCode,
) {
    let now_ms = unix_millis(now);
    match (code, key) {
        (DecisionCode::Valid, Some((tenant, id))) => d.observe_request(now_ms, tenant, id, ip),
        (DecisionCode::Revoked, Some((tenant, id))) => {
            d.observe_revoked_use(now_ms, tenant, id, "revoked");
            d.observe_failure(now_ms, Some(tenant), Some(id), ip, code.as_str());
        }
        (DecisionCode::Expired, Some((tenant, id))) => {
            d.observe_revoked_use(now_ms, tenant, id, "expired");
            d.observe_failure(now_ms, Some(tenant), Some(id), ip, code.as_str());
        }
        (_, Some((tenant, id))) => {
            d.observe_failure(now_ms, Some(tenant), Some(id), ip, code.as_str());
        }
        (_, None) => d.observe_failure(now_ms, None, None, ip, code.as_str()),
    }
}

/// Closes windows and publishes raised events every [`TICK`].
pub fn spawn_ticker(
    detector: Arc<Detector>,
    events: Events,
    clock: Arc<dyn portcullis_core::clock::Clock>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            detector.tick(unix_millis(clock.now()));
            let raised = detector.drain();
            if !raised.is_empty() {
                events.publish(raised).await;
            }
        }
    })
}
