//! The gateway's rate limits of an admitted key: its own limit and the route's policy, then its
//! tenant's; the `RateLimit-Policy` / `RateLimit` headers of the tighter one.
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use portcullis_ratelimit::{Outcome, Quota};

use super::{
    Gateway,
    refusal::{Refusal, too_many},
    runtime::{Route, Runtime},
};
use portcullis_service::{cache::CachedKey, metrics::LimiterLabels};

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

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
        .map(|p| (p.name.clone(), p.quota, format!("{}\u{0}{}", p.name, k.id)));
    let key_limit = k
        .rate_limit
        .and_then(|own| Quota::new(own.requests, own.per_seconds, own.burst).ok())
        .map(|q| (Arc::<str>::from("key"), q, k.id.clone()));
    let tenant_limit = key
        .found
        .tenant_rate_limit
        .and_then(|t| Quota::new(t.requests, t.per_seconds, t.burst).ok())
        .or(rt.tenant_quota)
        .map(|q| {
            (
                Arc::<str>::from("tenant"),
                q,
                k.tenant_id.as_str().to_owned(),
            )
        });
    let mut shown: Option<Shown> = None;
    for (limiter, which, entry) in [
        (&gw.keys, "key", key_limit),
        (&gw.keys, "key", route_limit),
        (&gw.tenants, "tenant", tenant_limit),
    ] {
        let Some((name, quota, id)) = entry else {
            continue;
        };
        let outcome = limiter.check(&id, &quota, now);
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
    let value = |v: String| HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""));
    [
        (
            RATELIMIT_POLICY.clone(),
            value(portcullis_ratelimit::policy_header_value(&s.name, &s.quota)),
        ),
        (
            RATELIMIT.clone(),
            value(portcullis_ratelimit::ratelimit_header_value(
                &s.name, &s.outcome,
            )),
        ),
    ]
}
