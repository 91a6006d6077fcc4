//! `audit.degraded`: raised when the audit log starts dropping records or failing to write them,
//! and again (with `"state": "recovered"`) when it is back. An event of no tenant: global
//! readers (root admin keys) see it.
use portcullis_events::EventType;
use serde_json::json;

use crate::{config::AuditMode, state::AppState};

/// Publishes one event per start and per end of a degraded episode of the audit log, as the log
/// tells them (an episode that began and ended before the watcher looked is still reported,
/// both events, from the log's episode count).
pub fn spawn_watcher(state: AppState) -> Option<tokio::task::JoinHandle<()>> {
    let mode = state.audit.config()?.mode;
    let mut episodes = state.audit.episodes()?;
    state.events.backend()?;
    Some(tokio::spawn(async move {
        // Episodes told so far, and whether the last one told is still open.
        let (mut told, mut open) = (0, false);
        loop {
            let now = *episodes.borrow_and_update();
            if now.started > told {
                if open {
                    // It ended before a new one started.
                    emit(&state, mode, false).await;
                }
                emit(&state, mode, true).await;
                (told, open) = (now.started, true);
            }
            if open && !now.degraded {
                emit(&state, mode, false).await;
                open = false;
            }
            if episodes.changed().await.is_err() {
                return;
            }
        }
    }))
}

async fn emit(state: &AppState, mode: AuditMode, degraded: bool) {
    let data = json!({
        "state": if degraded { "degraded" } else { "recovered" },
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
