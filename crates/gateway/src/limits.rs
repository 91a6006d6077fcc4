//! The gateway's rate limits of an admitted key: its own limit and the route's policy, then its
//! tenant's; the `RateLimit-Policy` / `RateLimit` headers of the tighter one.
use std::sync::{Arc, LazyLock};

use axum::http::{HeaderName, HeaderValue};
use portcullis_http::header_value::written;
use portcullis_ratelimit::{Outcome, Quota};

use super::{
    Gateway,
    refusal::{Refusal, too_many},
    runtime::{Route, Runtime},
};
use portcullis_service::{cache::CachedKey, metrics::LimiterLabels};

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static KEY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("key"));
static TENANT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("tenant"));

/// An entry of the per-key limiter: the route policy's name (none for the key's own limit) and
/// the key's id.
pub type KeyLimit = (Option<Arc<str>>, Arc<str>);

/// A limit and its outcome, for the `RateLimit` headers.
pub(super) struct Shown {
    name: Arc<str>,
    quota: Quota,
    outcome: Outcome,
}

/// The key's own limit and the route's policy (each counted per key), then the tenant's (its
/// own, or the configured default). Returns the tighter outcome for the headers.
///
/// A key's own limit is set through the admin API, by a root admin or by an admin key bound to
/// the key's tenant; the route's policy is the operator's. So a key's own limit never replaces
/// the policy: both apply, and the stricter refuses first.
pub(super) fn limit(
    gw: &Gateway,
    rt: &Runtime,
    route: &Route,
    key: &CachedKey,
    now: u64,
) -> Result<Option<Shown>, Refusal> {
    let k = &key.found.key;
    let route_limit = route
        .policy
        .as_ref()
        .map(|p| (p.name.clone(), p.quota, Some(p.name.clone())));
    let key_limit = k
        .rate_limit
        .and_then(|own| Quota::new(own.requests, own.per_seconds, own.burst).ok())
        .map(|q| (KEY.clone(), q, None));
    let tenant_limit = key
        .found
        .tenant_rate_limit
        .and_then(|t| Quota::new(t.requests, t.per_seconds, t.burst).ok())
        .or(rt.tenant_quota)
        .map(|q| (TENANT.clone(), q));
    let mut shown: Option<Shown> = None;
    // Per key: its own limit, then the route's policy (an entry per policy and key); then the
    // tenant's. Entries are named by shared ids: nothing is copied unless an entry is new.
    let per_key = [key_limit, route_limit]
        .into_iter()
        .flatten()
        .map(|(name, quota, policy)| {
            let outcome = gw.keys.check(&(policy, key.id.clone()), &quota, now);
            ("key", name, quota, outcome)
        });
    let per_tenant = tenant_limit.into_iter().map(|(name, quota)| {
        let outcome = gw.tenants.check(&key.tenant, &quota, now);
        ("tenant", name, quota, outcome)
    });
    for (which, name, quota, outcome) in per_key.chain(per_tenant) {
        gw.app
            .metrics
            .ratelimit_decisions
            .get_or_create(&LimiterLabels {
                limiter: which,
                result: if outcome.allowed {
                    "allowed"
                } else {
                    "limited"
                },
            })
            .inc();
        let this = Shown {
            name,
            quota,
            outcome,
        };
        if !this.outcome.allowed {
            if let Some(d) = &gw.app.anomaly {
                let now_ms = portcullis_events::anomaly::unix_millis(gw.app.clock.precise_now());
                d.observe_rate_limited(now_ms, &k.tenant_id, &k.id);
            }
            let mut r = too_many(
                "rate_limited",
                "rate_limited",
                "rate limit exceeded; retry after the time in Retry-After",
                this.outcome.retry_after_seconds,
            );
            r.headers.extend(ratelimit_headers(&this));
            return Err(r);
        }
        if shown
            .as_ref()
            .is_none_or(|s| this.outcome.remaining < s.outcome.remaining)
        {
            shown = Some(this);
        }
    }
    Ok(shown)
}

pub(super) fn ratelimit_headers(s: &Shown) -> [(HeaderName, HeaderValue); 2] {
    let empty = || HeaderValue::from_static("");
    [
        (
            RATELIMIT_POLICY.clone(),
            written(|w| portcullis_ratelimit::write_policy_header_value(w, &s.name, &s.quota))
                .unwrap_or_else(empty),
        ),
        (
            RATELIMIT.clone(),
            written(|w| portcullis_ratelimit::write_ratelimit_header_value(w, &s.name, &s.outcome))
                .unwrap_or_else(empty),
        ),
    ]
}
