//! Endpoint secrets sealed at rest: a [`WebhookStore`] in front of the real one that seals a
//! secret before it is stored (AES-256-GCM, [`portcullis_core::seal`], key derived from the
//! server's pepper with the label [`KEY_LABEL`]) and opens it when a delivery is claimed. The
//! associated data names the endpoint's tenant and id, so a sealed secret copied onto another
//! endpoint's row does not open.
//!
//! Secrets stored in plaintext by an earlier version are sealed once at start
//! ([`SealedWebhookStore::seal_plaintext`]); a secret that does not open (plaintext, another
//! pepper, another row) never signs: the attempt fails with `secret_unavailable` and the
//! reason is logged.
use std::sync::Arc;

use async_trait::async_trait;
use portcullis_core::{
    ExposeSecret, OffsetDateTime, SecretString, hash::Pepper, seal::Sealer, tenant::TenantId,
};
use portcullis_events::{
    Event,
    webhook::{
        Attempt, AttemptResult, Delivery, DeliveryStatus, Endpoint, EndpointChange, SecretRewrite,
        WebhookError, WebhookStore,
    },
};

/// The HKDF label of the key that seals webhook secrets.
pub const KEY_LABEL: &[u8] = b"portcullis webhook secret sealing v1";

/// The associated data of an endpoint's secret.
fn aad(tenant: &TenantId, endpoint_id: &str) -> Vec<u8> {
    format!("webhook-secret\0{}\0{endpoint_id}", tenant.as_str()).into_bytes()
}

/// The sealing store (see the module).
#[derive(Debug)]
pub struct SealedWebhookStore {
    inner: Arc<dyn WebhookStore>,
    sealer: Sealer,
}

impl SealedWebhookStore {
    pub fn new(inner: Arc<dyn WebhookStore>, pepper: &Pepper) -> Self {
        Self {
            inner,
            sealer: Sealer::from_pepper(pepper, KEY_LABEL),
        }
    }

    fn seal(&self, tenant: &TenantId, id: &str, secret: &SecretString) -> SecretString {
        SecretString::from(self.sealer.seal(secret.expose_secret(), &aad(tenant, id)))
    }

    /// The plaintext of a stored secret, or `None` (logged) when it does not open.
    fn open(&self, a: &Attempt, stored: &SecretString) -> Option<SecretString> {
        match self
            .sealer
            .open(stored.expose_secret(), &aad(&a.tenant, &a.endpoint_id))
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(
                    tenant = %a.tenant, webhook_id = %a.endpoint_id, error = %e,
                    "webhook secret does not open (stored in plaintext, under another pepper, \
                     or copied from another endpoint)"
                );
                None
            }
        }
    }

    /// Seals every secret still stored in plaintext; returns how many.
    pub async fn seal_plaintext(&self) -> Result<u64, WebhookError> {
        let sealer = &self.sealer;
        let rewrite = |tenant: &TenantId, id: &str, stored: &str| {
            (!Sealer::is_sealed(stored)).then(|| sealer.seal(stored, &aad(tenant, id)))
        };
        self.inner.rewrite_secrets(&rewrite).await
    }
}

#[async_trait]
impl WebhookStore for SealedWebhookStore {
    async fn create_endpoint(
        &self,
        e: &Endpoint,
        secret: &SecretString,
        max_per_tenant: u32,
    ) -> Result<(), WebhookError> {
        let sealed = self.seal(&e.tenant, &e.id, secret);
        self.inner.create_endpoint(e, &sealed, max_per_tenant).await
    }

    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, WebhookError> {
        self.inner.list_endpoints(tenant, after, limit).await
    }

    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<Endpoint>, WebhookError> {
        self.inner.get_endpoint(tenant, id).await
    }

    async fn update_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
        change: &EndpointChange,
        now: OffsetDateTime,
    ) -> Result<(Endpoint, Endpoint), WebhookError> {
        self.inner.update_endpoint(tenant, id, change, now).await
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &str) -> Result<Endpoint, WebhookError> {
        self.inner.delete_endpoint(tenant, id).await
    }

    async fn roll_secret(
        &self,
        tenant: &TenantId,
        id: &str,
        secret: &SecretString,
        previous_expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Endpoint, WebhookError> {
        let sealed = self.seal(tenant, id, secret);
        self.inner
            .roll_secret(tenant, id, &sealed, previous_expires_at, now)
            .await
    }

    async fn cursor(&self) -> Result<u64, WebhookError> {
        self.inner.cursor().await
    }

    async fn fan_out(
        &self,
        events: &[Event],
        through: u64,
        now: OffsetDateTime,
    ) -> Result<u64, WebhookError> {
        self.inner.fan_out(events, through, now).await
    }

    /// The claimed attempts with their secrets opened: the current one first (none at all
    /// when it does not open), then the previous one when it opens.
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Attempt>, WebhookError> {
        let mut claimed = self.inner.claim_due(now, lease_until, limit).await?;
        for a in &mut claimed {
            let stored = std::mem::take(&mut a.secrets);
            let mut opened = stored.iter().map(|s| self.open(a, s));
            a.secrets = match opened.next().flatten() {
                Some(current) => std::iter::once(current).chain(opened.flatten()).collect(),
                None => Vec::new(),
            };
        }
        Ok(claimed)
    }

    async fn finish(
        &self,
        attempt: &Attempt,
        result: &AttemptResult,
    ) -> Result<bool, WebhookError> {
        self.inner.finish(attempt, result).await
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>, WebhookError> {
        self.inner
            .list_deliveries(tenant, endpoint_id, status, after, limit)
            .await
    }

    async fn redeliver(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        delivery_id: &str,
        now: OffsetDateTime,
    ) -> Result<Delivery, WebhookError> {
        self.inner
            .redeliver(tenant, endpoint_id, delivery_id, now)
            .await
    }

    async fn purge(&self, before: OffsetDateTime) -> Result<u64, WebhookError> {
        self.inner.purge(before).await
    }

    async fn rewrite_secrets(&self, f: &SecretRewrite<'_>) -> Result<u64, WebhookError> {
        self.inner.rewrite_secrets(f).await
    }
}

#[cfg(test)]
#[path = "sealed_tests.rs"]
mod tests;
