//! `audit.degraded`: raised when the audit log starts dropping records or failing to write them,
//! and again (with `"state": "recovered"`) when it is back. An event of no tenant: global
//! readers (root admin keys) see it.
use std::time::Duration;

use portcullis_events::EventType;
use serde_json::json;

use crate::{config::AuditMode, state::AppState};

/// How often the audit log's health is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Watches the audit log and publishes one event per change of its state.
pub fn spawn_watcher(state: AppState) -> Option<tokio::task::JoinHandle<()>> {
    let mode = state.audit.config()?.mode;
    state.events.backend()?;
    Some(tokio::spawn(async move {
        let mut was = false;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tick.tick().await;
            let now = state.audit.degraded();
            if now == was {
                continue;
            }
            was = now;
            let data = json!({
                "state": if now { "degraded" } else { "recovered" },
                "mode": match mode {
                    AuditMode::FailClosed => "fail_closed",
                    AuditMode::BestEffort => "best_effort",
                },
                "records_dropped_total": state.audit.metrics().dropped.get(),
                "write_failures_total": state.audit.metrics().write_failures.get(),
            });
            state
                .events
                .emit(EventType::AuditDegraded, None, state.clock.now(), data)
                .await;
        }
    }))
}
