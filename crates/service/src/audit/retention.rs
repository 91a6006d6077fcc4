//! The server's retention purge: every `audit.purge_interval_seconds`, each chain loses its
//! entries older than its window (`audit.retention_days`, or the tenant's own in
//! `audit.tenant_retention_days`) under a signed retention checkpoint, and the purge is recorded
//! in the chain itself (`audit.purge`, kind `maintenance`, actor `server`). The removal itself
//! is `portcullis_audit::retention::purge_chain`, shared with `portcullis audit purge`.
use std::{sync::Arc, time::Duration};

use portcullis_audit::{
    AuditStoreError, Kind, Record, SYSTEM_CHAIN,
    retention::{PurgeError, Purged, purge_chain},
};
use portcullis_core::clock::Clock;

use super::AuditLog;
use crate::config::AuditConfig;

/// The actor of the server's own maintenance.
pub const SERVER: &str = "server";

/// What a purge did: the chains it cut, and those it could not (with the reason).
#[derive(Debug, Default)]
pub struct PurgeReport {
    pub purged: Vec<Purged>,
    pub failed: Vec<(String, String)>,
}

/// Purges the chains of `log` (all, or `only` one) by their retention windows as of `now`, and
/// records each purge in its chain with `actor`. A chain that fails (a broken range, a store
/// error) is reported and skipped; the others are still purged.
pub async fn purge(
    log: &AuditLog,
    config: &AuditConfig,
    now: time::OffsetDateTime,
    only: Option<&str>,
    actor: &str,
) -> Result<PurgeReport, AuditStoreError> {
    let mut report = PurgeReport::default();
    let (Some(store), Some(signer)) = (log.store(), log.signer()) else {
        return Ok(report);
    };
    let chains = match only {
        Some(chain) => vec![chain.to_owned()],
        None => store.chains().await?,
    };
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
                r.actor = Some(actor.to_owned());
                log.record_maintenance(r);
                report.purged.push(p);
            }
            Ok(None) => {}
            Err(PurgeError::Broken(b)) => {
                report
                    .failed
                    .push((chain, format!("refusing to purge a broken chain: {b}")));
            }
            Err(e) => report.failed.push((chain, e.to_string())),
        }
    }
    Ok(report)
}

/// [`purge`] of every chain by the server, with the outcome logged.
pub async fn purge_once(log: &AuditLog, config: &AuditConfig, clock: &dyn Clock) -> Vec<Purged> {
    match purge(log, config, clock.now(), None, SERVER).await {
        Ok(report) => {
            for p in &report.purged {
                tracing::info!(
                    chain = p.chain,
                    removed = p.removed,
                    "audit retention purge"
                );
            }
            for (chain, why) in &report.failed {
                tracing::error!(chain, error = %why, "audit retention purge failed");
            }
            report.purged
        }
        Err(e) => {
            tracing::error!(error = %e, "audit retention: cannot list the chains");
            Vec::new()
        }
    }
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
