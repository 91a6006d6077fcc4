//! The delivery worker: the fan-out (events → deliveries, from a stored cursor) and the sender
//! (due deliveries → signed POSTs, results, retries, dead letters), plus the hourly purge of
//! finished deliveries past the events' retention.
//!
//! Due times come from the server's [`Clock`] (so tests move them with a manual clock); the
//! worker waits on tokio time: woken by the event backend's live feed, by new deliveries, by a
//! finished attempt, and otherwise every `poll_interval_ms`.
use std::{sync::Arc, time::Duration};

use portcullis_core::{ExposeSecret, clock::Clock};
use portcullis_events::{
    EventBackend, Scope,
    webhook::{Attempt, AttemptResult, Next, RetrySchedule, WebhookStore, sign_with},
};
use tokio::{sync::Notify, task::JoinSet};

use super::{
    config::WebhooksConfig,
    guard::SystemLookup,
    sender::{Failure, HTTP_STATUS, Sender},
};
use crate::{
    audit::{AuditLog, Kind, Record},
    events::Events,
};

/// Events read per fan-out step.
const FAN_OUT_PAGE: usize = 500;
/// How long a claimed delivery is left alone beyond the attempt's timeout before it is
/// claimed again (an attempt cut short by a crash is made again after it).
const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// What every attempt needs.
#[derive(Debug, Clone)]
struct Ctx {
    store: Arc<dyn WebhookStore>,
    sender: Sender,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    schedule: RetrySchedule,
}

/// Starts the worker when events and webhook delivery are enabled; the tasks to abort at
/// shutdown.
pub fn spawn(
    events: &Events,
    audit: &AuditLog,
    clock: &Arc<dyn Clock>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (Some(backend), Some(store), Some(config)) =
        (events.backend(), events.webhooks(), events.config())
    else {
        return Vec::new();
    };
    let c = config.webhooks.clone();
    let sealing = seal_plaintext(events.sealed_webhooks().cloned());
    if !c.enabled {
        return vec![tokio::spawn(sealing)];
    }
    let sender = match Sender::new(
        Duration::from_secs(c.timeout_seconds),
        c.danger_allow_private_webhook_targets,
        Arc::new(SystemLookup),
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery disabled: no TLS configuration");
            return Vec::new();
        }
    };
    let wake = Arc::new(Notify::new());
    let poll = Duration::from_millis(c.poll_interval_ms);
    let ctx = Ctx {
        store: store.clone(),
        sender,
        audit: audit.clone(),
        clock: clock.clone(),
        schedule: c.schedule(),
    };
    let retention = time::Duration::days(i64::from(config.retention_days));
    vec![
        tokio::spawn(fan_out(
            backend.clone(),
            store.clone(),
            clock.clone(),
            wake.clone(),
            poll,
        )),
        tokio::spawn(async move {
            // Nothing is claimed before every stored secret is sealed.
            sealing.await;
            send(ctx, c, wake).await;
        }),
        tokio::spawn(purge(store.clone(), clock.clone(), retention)),
    ]
}

/// Seals the endpoint secrets an earlier version stored in plaintext (once, at start).
async fn seal_plaintext(store: Option<Arc<super::sealed::SealedWebhookStore>>) {
    let Some(store) = store else {
        return;
    };
    match store.seal_plaintext().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            sealed = n,
            "webhook secrets stored in plaintext were sealed"
        ),
        Err(e) => tracing::error!(error = %e, "webhook secrets could not be sealed"),
    }
}

/// Follows the events after the stored cursor and turns them into deliveries.
async fn fan_out(
    backend: Arc<dyn EventBackend>,
    store: Arc<dyn WebhookStore>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    poll: Duration,
) {
    // Joined before the first read: nothing stored after it is missed.
    let mut live = backend.live();
    let mut cursor = None;
    loop {
        let after = match cursor {
            Some(c) => c,
            None => match store.cursor().await {
                Ok(c) => *cursor.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook fan-out: the cursor cannot be read");
                    tokio::time::sleep(poll).await;
                    continue;
                }
            },
        };
        match backend
            .read_after(after, &Scope::global(), FAN_OUT_PAGE)
            .await
        {
            Ok(page) if !page.is_empty() => {
                let through = page.last().map_or(after, |e| e.id);
                match store.fan_out(&page, through, clock.now()).await {
                    Ok(created) => {
                        cursor = Some(through);
                        if created > 0 {
                            wake.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook fan-out failed; retrying");
                        cursor = None;
                        tokio::time::sleep(poll).await;
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "webhook fan-out: events cannot be read");
                tokio::time::sleep(poll).await;
                continue;
            }
        }
        tokio::select! {
            r = live.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                    tokio::time::sleep(poll).await;
                    live = backend.live();
                }
            }
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Claims due deliveries up to the concurrency limit and attempts each in a task of its own.
async fn send(ctx: Ctx, c: WebhooksConfig, wake: Arc<Notify>) {
    let lease = time::Duration::try_from(Duration::from_secs(c.timeout_seconds) + LEASE_MARGIN)
        .unwrap_or(time::Duration::minutes(5));
    let poll = Duration::from_millis(c.poll_interval_ms);
    // Dropped (and its attempts aborted) when the worker is stopped.
    let mut running = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let free = c.concurrency.saturating_sub(running.len());
        let mut more = false;
        if free > 0 {
            let now = ctx.clock.now();
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match ctx.store.claim_due(now, now + lease, limit).await {
                Ok(batch) => {
                    more = batch.len() == free;
                    for a in batch {
                        running.spawn(attempt(ctx.clone(), a));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook deliveries cannot be claimed"),
            }
        }
        if more {
            continue;
        }
        tokio::select! {
            () = wake.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// One attempt: sign, POST, record the result, audit it.
async fn attempt(ctx: Ctx, a: Attempt) {
    let started = tokio::time::Instant::now();
    let t = ctx.clock.now().unix_timestamp();
    let secrets: Vec<&str> = a.secrets.iter().map(|s| s.expose_secret()).collect();
    let answer = if secrets.is_empty() {
        // The secret did not open (logged by the store): nothing unsigned is sent.
        Err(Failure::SecretUnavailable)
    } else {
        let signature = sign_with(&secrets, t, a.body.as_bytes());
        ctx.sender.post(&a, &signature).await
    };
    let elapsed = started.elapsed();
    let now = ctx.clock.now();
    let retry = || {
        ctx.schedule
            .next_attempt(a.retry_from, now, a.attempts + 1)
            .map_or(Next::Dead, Next::RetryAt)
    };
    let (status_code, error, next) = match answer {
        Ok(code) if (200..300).contains(&code) => (Some(code), None, Next::Delivered),
        Ok(code) => (Some(code), Some(HTTP_STATUS.to_owned()), retry()),
        Err(f) => (None, Some(f.as_str().to_owned()), retry()),
    };
    let result = AttemptResult {
        at: now,
        status_code,
        error,
        next,
    };
    let counted = match ctx.store.finish(&a, &result).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, delivery_id = %a.delivery_id, "webhook attempt result not stored");
            false
        }
    };
    let n = a.attempts + 1;
    let outcome = match result.next {
        Next::Delivered => "delivered",
        Next::RetryAt(_) => "retry",
        Next::Dead => "dead",
    };
    match result.next {
        Next::Delivered => tracing::info!(
            tenant = %a.tenant, webhook_id = %a.endpoint_id, delivery_id = %a.delivery_id,
            event_id = a.event_id, attempt = n, status = status_code, "webhook delivered"
        ),
        Next::RetryAt(_) => tracing::warn!(
            tenant = %a.tenant, webhook_id = %a.endpoint_id, delivery_id = %a.delivery_id,
            event_id = a.event_id, attempt = n, status = status_code,
            error = result.error.as_deref(), "webhook attempt failed; will retry"
        ),
        Next::Dead => tracing::warn!(
            tenant = %a.tenant, webhook_id = %a.endpoint_id, delivery_id = %a.delivery_id,
            event_id = a.event_id, attempt = n, status = status_code,
            error = result.error.as_deref(), "webhook delivery dead-lettered"
        ),
    }
    ctx.audit
        .record(audit_record(&ctx, &a, &result, outcome, elapsed, counted));
}

/// The audit record of an attempt (chain of the endpoint's tenant): ids, the attempt's number,
/// the answer's status or the failure's class, the duration. Never the secret, the signature,
/// the body or the URL.
fn audit_record(
    ctx: &Ctx,
    a: &Attempt,
    r: &AttemptResult,
    outcome: &str,
    elapsed: Duration,
    counted: bool,
) -> Record {
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .map_or(serde_json::Value::Null, serde_json::Value::String)
    };
    let mut rec = Record::new(ctx.clock.precise_now(), Kind::Request, "webhook.attempt");
    rec.tenant = Some(a.tenant.as_str().to_owned());
    rec.decision = Some(if r.next == Next::Delivered {
        portcullis_audit::Decision::Allow
    } else {
        portcullis_audit::Decision::Deny
    });
    rec.reason.clone_from(&r.error);
    let mut rec = rec
        .with("webhook_id", a.endpoint_id.as_str())
        .with("delivery_id", a.delivery_id.as_str())
        .with("event_id", a.event_id)
        .with("event_type", a.event_type.as_str())
        .with("attempt", a.attempts + 1)
        .with("result", outcome)
        .with(
            "duration_ms",
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        )
        .with(
            "status_code",
            r.status_code.map_or(serde_json::Value::Null, Into::into),
        );
    if let Next::RetryAt(t) = r.next {
        rec = rec.with("next_attempt_at", rfc3339(t));
    }
    if !counted {
        // The delivery was claimed again meanwhile (or deleted): this result was not kept.
        rec = rec.with("superseded", true);
    }
    rec
}

/// Removes finished deliveries past the events' retention, every hour.
async fn purge(store: Arc<dyn WebhookStore>, clock: Arc<dyn Clock>, retention: time::Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(3_600));
    loop {
        tick.tick().await;
        match store.purge(clock.now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "finished webhook deliveries past retention removed"
            ),
            Err(e) => tracing::warn!(error = %e, "webhook deliveries purge failed"),
        }
    }
}
