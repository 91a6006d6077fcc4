//! The background tasks of one server, started from its state: the change feed into the key
//! cache, the audit and event retention purges, key-expiry notices, the audit health watcher,
//! webhook delivery and the anomaly detector's ticker. Each concept's task takes only the parts
//! it works on; this is the one place that knows the whole state.
use tokio::task::JoinHandle;

use crate::{audit, changes, events, state::AppState};

/// Starts every background task `state` calls for; the handles to abort at shutdown.
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    // Changes made by other writers of the store (the operator CLI) reach the cache this way.
    let mut tasks = vec![changes::spawn(
        state.store.clone(),
        state.cache.clone(),
        state.changes.clone(),
        state.change_poll_ms,
    )];
    if let Some(config) = state.audit.config() {
        tasks.extend(audit::retention::spawn_purger(
            state.audit.clone(),
            config.clone(),
            state.clock.clone(),
        ));
    }
    let ev = &state.events;
    if ev.backend().is_some() {
        tasks.push(events::spawn_purger(ev.clone(), state.clock.clone()));
        tasks.extend(events::expiry::spawn_scanner(
            state.store.clone(),
            ev.clone(),
            state.clock.clone(),
        ));
        tasks.extend(events::audit_health::spawn_watcher(
            state.audit.clone(),
            ev.clone(),
            state.clock.clone(),
        ));
        tasks.extend(events::webhooks::spawn(ev, &state.audit, &state.clock));
        if let Some(detector) = &state.anomaly {
            tasks.push(events::anomaly::spawn_ticker(
                detector.clone(),
                ev.clone(),
                state.clock.clone(),
            ));
        }
    }
    tasks
}
