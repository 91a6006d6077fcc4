//! `audit.degraded`: raised when the audit log starts dropping records or failing to write them,
//! and again (with `"state": "recovered"`) when it is back. An event of no tenant: global
//! readers (root admin keys) see it.
use portcullis_events::EventType;
use serde_json::json;

use std::sync::Arc;

use portcullis_core::clock::Clock;

use super::Events;
use crate::{audit::AuditLog, config::AuditMode};

/// Publishes one event per start and per end of a degraded episode of the audit log, as the log
/// tells them (an episode that began and ended before the watcher looked is still reported,
/// both events, from the log's episode count).
pub fn spawn_watcher(
    audit: AuditLog,
    events: Events,
    clock: Arc<dyn Clock>,
) -> Option<tokio::task::JoinHandle<()>> {
    let mode = audit.config()?.mode;
    let mut episodes = audit.episodes()?;
    events.backend()?;
    let to = Watched {
        audit,
        events,
        clock,
        mode,
    };
    Some(tokio::spawn(async move {
        // Episodes told so far, and whether the last one told is still open.
        let (mut told, mut open) = (0, false);
        loop {
            let now = *episodes.borrow_and_update();
            if now.started > told {
                if open {
                    // It ended before a new one started.
                    to.emit(false).await;
                }
                to.emit(true).await;
                (told, open) = (now.started, true);
            }
            if open && !now.degraded {
                to.emit(false).await;
                open = false;
            }
            if episodes.changed().await.is_err() {
                return;
            }
        }
    }))
}

/// The audit log watched, and where its episodes are told.
struct Watched {
    audit: AuditLog,
    events: Events,
    clock: Arc<dyn Clock>,
    mode: AuditMode,
}

impl Watched {
    async fn emit(&self, degraded: bool) {
        let data = json!({
        "state": if degraded { "degraded" } else { "recovered" },
        "mode": match self.mode {
            AuditMode::FailClosed => "fail_closed",
            AuditMode::BestEffort => "best_effort",
        },
        "records_dropped_total": self.audit.metrics().dropped.get(),
        "write_failures_total": self.audit.metrics().write_failures.get(),
        });
        self.events
            .emit(EventType::AuditDegraded, None, self.clock.now(), data)
            .await;
    }
}
