//! The server's retention purge: every `audit.purge_interval_seconds`, each chain loses its
//! entries older than its window (`audit.retention_days`, or the tenant's own in
//! `audit.tenant_retention_days`) under a signed retention checkpoint, and the purge is recorded
//! in the chain itself (`audit.purge`, kind `maintenance`, actor `server`). The removal itself
//! is `portcullis_audit::retention::purge_chain`, shared with `portcullis audit purge`.
use std::{sync::Arc, time::Duration};

use portcullis_audit::{
    Kind, Record, SYSTEM_CHAIN,
    retention::{PurgeError, Purged, purge_chain},
};
use portcullis_core::clock::Clock;

use super::AuditLog;
use crate::config::AuditConfig;

/// The actor of the server's own maintenance.
pub const SERVER: &str = "server";

/// Purges every chain of `log` by its retention window as of `clock.now()` and records each
/// purge. A chain that fails (a broken range, a store error) is logged and skipped; the others
/// are still purged.
pub async fn purge_once(log: &AuditLog, config: &AuditConfig, clock: &dyn Clock) -> Vec<Purged> {
    let (Some(store), Some(signer)) = (log.store(), log.signer()) else {
        return Vec::new();
    };
    let chains = match store.chains().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "audit retention: cannot list the chains");
            return Vec::new();
        }
    };
    let now = clock.now();
    let mut done = Vec::new();
    for chain in chains {
        let days = config.retention_days_of(&chain);
        let cutoff = now - time::Duration::days(i64::from(days));
        match purge_chain(store.as_ref(), signer, &chain, cutoff, now).await {
            Ok(Some(p)) => {
                let mut r = Record::new(now, Kind::Maintenance, "audit.purge")
                    .with("removed", p.removed)
                    .with("through_seq", p.through_seq)
                    .with("retention_days", days);
                r.tenant = (chain != SYSTEM_CHAIN).then(|| chain.clone());
                r.actor = Some(SERVER.to_owned());
                log.record(r);
                tracing::info!(chain, removed = p.removed, "audit retention purge");
                done.push(p);
            }
            Ok(None) => {}
            Err(PurgeError::Broken(b)) => {
                tracing::error!(chain, broken = %b, "audit retention: refusing to purge a broken chain");
            }
            Err(e) => tracing::error!(chain, error = %e, "audit retention purge failed"),
        }
    }
    done
}

/// Runs [`purge_once`] every `purge_interval_seconds` (the first one at once) until aborted.
/// `None` for a disabled log.
pub fn spawn_purger(
    log: AuditLog,
    config: AuditConfig,
    clock: Arc<dyn Clock>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !log.enabled() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(config.purge_interval_seconds));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            purge_once(&log, &config, clock.as_ref()).await;
        }
    }))
}
