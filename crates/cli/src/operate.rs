//! The operator commands on a data directory: `admin-key`, `tenant` and `key` (create, list,
//! update, roll, revoke), through the same operations as the HTTP API.
use clap::Subcommand;
use portcullis_core::{
    ExposeSecret,
    error::ValidationError,
    ids,
    ratelimit::RateLimit,
    request::{CreateAdminKey, CreateKey, CreateTenant, Rfc3339, RollKey},
    tenant::{Environment, TenantId},
};
use portcullis_server::ops::{self, Ctx, OpError};
use portcullis_store::{KeyFilter, PageRequest};
use serde_json::json;

use crate::{Failure, output::Output};

#[derive(Debug, Subcommand)]
pub(crate) enum AdminKeyCmd {
    /// Create an admin key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Bind the key to one tenant (default: global).
        #[arg(long)]
        tenant: Option<String>,
        /// Admin scopes (comma-separated or repeated); default: all admin scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// List admin keys.
    List,
    /// Revoke an admin key.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TenantCmd {
    /// Create a tenant.
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// Key prefix (keys look like `{prefix}_live_…`); default `sk`.
        #[arg(long)]
        key_prefix: Option<String>,
        /// Maximum lifetime of the tenant's keys, in seconds.
        #[arg(long)]
        max_key_lifetime_seconds: Option<i64>,
        /// Limit of all the tenant's keys together: REQUESTS/SECONDS, or REQUESTS/SECONDS:BURST
        /// (burst defaults to REQUESTS), e.g. 1000/60.
        #[arg(long, value_name = "REQUESTS/SECONDS[:BURST]", value_parser = parse_rate_limit)]
        rate_limit: Option<RateLimit>,
        /// Ceiling of the scopes of the tenant's keys: patterns (comma-separated or repeated),
        /// e.g. invoices:*,files:read. Default: no ceiling.
        #[arg(long, value_delimiter = ',')]
        allowed_scopes: Option<Vec<String>>,
        /// Ceiling of a key's own limit: REQUESTS/SECONDS[:BURST]. Keys created without a limit
        /// get this one. Default: no ceiling.
        #[arg(long, value_name = "REQUESTS/SECONDS[:BURST]", value_parser = parse_rate_limit)]
        max_key_rate_limit: Option<RateLimit>,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCmd {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_env)]
        environment: Environment,
        /// Scopes (comma-separated or repeated), e.g. invoices:read. Default: none.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Expiry (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
        /// Allowed client addresses / CIDRs (comma-separated or repeated).
        #[arg(long = "ip", value_delimiter = ',')]
        ip_allowlist: Vec<String>,
        /// The vendor's id of the customer.
        #[arg(long)]
        external_id: Option<String>,
        /// The key's own limit: REQUESTS/SECONDS, or REQUESTS/SECONDS:BURST (burst defaults to
        /// REQUESTS), e.g. 100/60:20. It applies with the route's rate-limit policy (the stricter
        /// wins); without one, the tenant's max_key_rate_limit (if any) is the key's limit.
        #[arg(long, value_name = "REQUESTS/SECONDS[:BURST]", value_parser = parse_rate_limit)]
        rate_limit: Option<RateLimit>,
    },
    /// List a tenant's keys.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_parser = parse_env)]
        environment: Option<Environment>,
        /// Only revoked (true) or only unrevoked (false) keys.
        #[arg(long)]
        revoked: Option<bool>,
    },
    /// Show one key.
    Show {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Give a key a new secret; the old one keeps working for the grace period.
    Roll {
        #[arg(long)]
        tenant: String,
        id: String,
        /// Seconds the old secret keeps working (0 to 604800; default 86400).
        #[arg(long)]
        grace_seconds: Option<i64>,
    },
    /// Revoke a key at once.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

pub(crate) fn parse_env(s: &str) -> Result<Environment, String> {
    Environment::parse(s).ok_or_else(|| "environment must be live or test".to_owned())
}

pub(crate) fn parse_rate_limit(s: &str) -> Result<RateLimit, String> {
    s.parse().map_err(|e| match e {
        ValidationError::InvalidRateLimit(m) => m.to_owned(),
        other => other.to_string(),
    })
}

/// Reads every page of a listing.
pub(crate) async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, Failure>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = portcullis_store::Result<portcullis_store::Page<T>>>,
{
    let mut all = Vec::new();
    let mut page = PageRequest {
        after: None,
        limit: 100,
    };
    loop {
        let p = fetch(page.clone()).await?;
        all.extend(p.items);
        match p.next_cursor {
            Some(c) => page.after = Some(c),
            None => return Ok(all),
        }
    }
}

pub(crate) fn tenant_id(s: &str) -> Result<TenantId, Failure> {
    TenantId::parse(s).map_err(|e| Failure::Op(e.into()))
}

pub(crate) fn key_id(s: &str) -> Result<&str, Failure> {
    if ids::is_id("key", s) {
        Ok(s)
    } else {
        Err(Failure::Op(OpError::NotFound))
    }
}

pub(crate) async fn admin_key(ctx: Ctx<'_>, out: &Output, cmd: AdminKeyCmd) -> Result<(), Failure> {
    match cmd {
        AdminKeyCmd::Create {
            name,
            tenant,
            scopes,
        } => {
            let input = CreateAdminKey {
                name,
                tenant_id: tenant,
                scopes,
            };
            let new = ops::create_admin_key(ctx, input).await?;
            out.created(
                json!({"admin_key": new.key, "secret": new.secret.expose_secret()}),
                new.secret.expose_secret(),
            );
        }
        AdminKeyCmd::List => out.list(
            &ctx.store.list_admin_keys().await?,
            &["id", "name", "tenant_id", "scopes", "hint", "revoked_at"],
        ),
        AdminKeyCmd::Revoke { id } => out.one(&ops::revoke_admin_key(ctx, &id).await?),
    }
    Ok(())
}

pub(crate) async fn tenant(ctx: Ctx<'_>, out: &Output, cmd: TenantCmd) -> Result<(), Failure> {
    match cmd {
        TenantCmd::Create {
            id,
            name,
            key_prefix,
            max_key_lifetime_seconds,
            rate_limit,
            allowed_scopes,
            max_key_rate_limit,
        } => {
            let t = ops::create_tenant(
                ctx,
                CreateTenant {
                    id,
                    name,
                    key_prefix,
                    max_key_lifetime_seconds,
                    rate_limit: rate_limit.map(Into::into),
                    allowed_scopes,
                    max_key_rate_limit: max_key_rate_limit.map(Into::into),
                },
            )
            .await?;
            out.one(&t);
        }
        TenantCmd::List => {
            let all = all_pages(|page| async move { ctx.store.list_tenants(&page).await }).await?;
            out.list(
                &all,
                &[
                    "id",
                    "name",
                    "status",
                    "key_prefix",
                    "max_key_lifetime_seconds",
                    "rate_limit",
                    "allowed_scopes",
                    "max_key_rate_limit",
                ],
            );
        }
    }
    Ok(())
}

pub(crate) async fn key(ctx: Ctx<'_>, out: &Output, cmd: KeyCmd) -> Result<(), Failure> {
    match cmd {
        KeyCmd::Create {
            tenant,
            name,
            environment,
            scopes,
            expires_at,
            ip_allowlist,
            external_id,
            rate_limit,
        } => {
            let expires_at = expires_at
                .map(|s| {
                    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                        .map(Rfc3339)
                        .map_err(|_| Failure::Usage("--expires-at must be an RFC 3339 time".into()))
                })
                .transpose()?;
            let input = CreateKey {
                name,
                environment,
                scopes,
                expires_at,
                ip_allowlist,
                metadata: None,
                external_id,
                rate_limit: rate_limit.map(Into::into),
            };
            let new = ops::create_key(ctx, &tenant_id(&tenant)?, input).await?;
            out.created(
                json!({"key": new.key, "secret": new.secret.expose_secret()}),
                new.secret.expose_secret(),
            );
        }
        KeyCmd::List {
            tenant,
            environment,
            revoked,
        } => {
            let t = tenant_id(&tenant)?;
            ops::load_tenant(ctx.store, &t).await?;
            let filter = KeyFilter {
                environment,
                revoked,
                external_id: None,
            };
            let filter = &filter;
            let t = &t;
            let all = all_pages(|page| async move { ctx.store.list_keys(t, filter, &page).await })
                .await?;
            out.list(
                &all,
                &[
                    "id",
                    "name",
                    "environment",
                    "hint",
                    "scopes",
                    "expires_at",
                    "revoked_at",
                    "last_used_at",
                    "rate_limit",
                ],
            );
        }
        KeyCmd::Show { tenant, id } => {
            let k = ctx
                .store
                .get_key(&tenant_id(&tenant)?, key_id(&id)?)
                .await?
                .ok_or(OpError::NotFound)?;
            out.one(&k);
        }
        KeyCmd::Roll {
            tenant,
            id,
            grace_seconds,
        } => {
            let r = ops::roll_key(
                ctx,
                &tenant_id(&tenant)?,
                key_id(&id)?,
                RollKey { grace_seconds },
            )
            .await?;
            out.created(
                json!({"key": r.key, "secret": r.secret.expose_secret(), "previous_secret_expires_at": r.previous_secret_expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()}),
                r.secret.expose_secret(),
            );
        }
        KeyCmd::Revoke { tenant, id } => {
            out.one(&ops::revoke_key(ctx, &tenant_id(&tenant)?, key_id(&id)?).await?);
        }
    }
    Ok(())
}
