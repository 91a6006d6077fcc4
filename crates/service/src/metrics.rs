//! Prometheus metrics: every handle the service, the API, the gateway and the listeners record
//! into, registered once; [`Metrics::encode`] renders them in the text exposition format.
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// A label value shared by reference count: cloning it for a lookup allocates nothing.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct SharedLabel(pub std::sync::Arc<str>);

impl prometheus_client::encoding::EncodeLabelValue for SharedLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

/// A gateway route's name (from the configuration, so the label set stays bounded).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteName {
    pub route: SharedLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    pub route: SharedLabel,
    pub status: u16,
    /// `allowed`, `unauthenticated`, `forbidden`, `rate_limited`, `blocked`, …
    pub decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimiterLabels {
    /// `key` or `tenant`.
    pub limiter: &'static str,
    /// `allowed` or `limited`.
    pub result: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
    ])
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabel, Histogram>,
    pub verify_decisions: Family<CodeLabel, Counter>,
    pub auth_failures: Family<CodeLabel, Counter>,
    pub cache_lookups: Family<ResultLabel, Counter>,
    /// `cache_lookups{result="hit"}` and `{result="miss"}`, resolved once for the hot path.
    pub cache_hit: Counter,
    pub cache_miss: Counter,
    pub usage_flush_errors: Counter,
    pub gateway_requests: Family<GatewayLabels, Counter>,
    pub gateway_duration: Family<RouteName, Histogram>,
    pub gateway_upstream_duration: Family<RouteName, Histogram>,
    pub ratelimit_decisions: Family<LimiterLabels, Counter>,
    pub brute_force_refused: Counter,
    pub brute_force_blocks: Counter,
    pub gateway_open_connections: Gauge,
    /// The listeners' connection metrics (both the API's and the gateway's).
    pub listeners: ListenerMetrics,
    pub audit: AuditMetrics,
    /// The event pipeline's handles ([`crate::events::Events`] takes clones of them).
    pub events: EventsMetrics,
}

/// The audit log's metrics. Cheap to clone (every handle shares its value): the audit writer
/// holds a copy.
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    /// Records committed to the audit store (acknowledged).
    pub written: Counter,
    /// Records that did not fit the queue.
    pub dropped: Counter,
    /// Failed batch writes (each retried).
    pub write_failures: Counter,
    pub checkpoints: Counter,
    pub queue_depth: Gauge,
    /// 1 while the last write succeeded, 0 after a failure.
    pub healthy: Gauge,
    pub batch_duration: Histogram,
    /// Records dropped because the audit database was at `max_bytes` (`best_effort`; also
    /// counted in `dropped`).
    pub dropped_over_budget: Counter,
    /// Bytes the audit database's pages in use take, as last measured.
    pub store_bytes: Gauge,
    /// 1 while the audit database is at or over `max_bytes`.
    pub over_budget: Gauge,
    /// Gateway refusals counted into aggregated `gateway.refused` records.
    pub refusals_aggregated: Counter,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self {
            written: Counter::default(),
            dropped: Counter::default(),
            write_failures: Counter::default(),
            checkpoints: Counter::default(),
            queue_depth: Gauge::default(),
            healthy: Gauge::default(),
            batch_duration: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            dropped_over_budget: Counter::default(),
            store_bytes: Gauge::default(),
            over_budget: Gauge::default(),
            refusals_aggregated: Counter::default(),
        }
    }
}

impl AuditMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "audit_records_written",
            "Audit records committed to the audit store",
            self.written.clone(),
        );
        registry.register(
            "audit_records_dropped",
            "Audit records dropped because the queue was full",
            self.dropped.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Failed audit batch writes (retried)",
            self.write_failures.clone(),
        );
        registry.register(
            "audit_checkpoints_written",
            "Signed audit checkpoints written",
            self.checkpoints.clone(),
        );
        registry.register(
            "audit_queue_depth",
            "Audit records waiting for the writer",
            self.queue_depth.clone(),
        );
        registry.register(
            "audit_healthy",
            "1 while the last audit write succeeded, 0 after a failure",
            self.healthy.clone(),
        );
        registry.register(
            "audit_batch_duration_seconds",
            "Time to seal and commit one audit batch",
            self.batch_duration.clone(),
        );
        registry.register(
            "audit_records_dropped_over_budget",
            "Audit records dropped because the audit database was at audit.max_bytes",
            self.dropped_over_budget.clone(),
        );
        registry.register(
            "audit_store_bytes",
            "Bytes of the audit database's pages in use, as last measured",
            self.store_bytes.clone(),
        );
        registry.register(
            "audit_over_budget",
            "1 while the audit database is at or over audit.max_bytes",
            self.over_budget.clone(),
        );
        registry.register(
            "audit_refusals_aggregated",
            "Gateway refusals without a valid credential counted into gateway.refused records",
            self.refusals_aggregated.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::with_audit(AuditMetrics::default())
    }
}

impl Metrics {
    /// The metrics, with the audit log's handles `audit` registered among them.
    pub fn with_audit(audit: AuditMetrics) -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ])
        });
        let verify_decisions = Family::<CodeLabel, Counter>::default();
        let auth_failures = Family::<CodeLabel, Counter>::default();
        let cache_lookups = Family::<ResultLabel, Counter>::default();
        let usage_flush_errors = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_duration.clone(),
        );
        registry.register(
            "verify_decisions",
            "Verify API decisions by code",
            verify_decisions.clone(),
        );
        registry.register(
            "auth_failures",
            "Rejected admin credentials by reason",
            auth_failures.clone(),
        );
        registry.register(
            "key_cache_lookups",
            "Credential cache lookups by result",
            cache_lookups.clone(),
        );
        registry.register(
            "usage_flush_errors",
            "Failed batched writes of last-used times",
            usage_flush_errors.clone(),
        );
        let gateway_requests = Family::<GatewayLabels, Counter>::default();
        let gateway_duration =
            Family::<RouteName, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let gateway_upstream_duration =
            Family::<RouteName, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let ratelimit_decisions = Family::<LimiterLabels, Counter>::default();
        let brute_force_refused = Counter::default();
        let brute_force_blocks = Counter::default();
        let gateway_open_connections = Gauge::default();
        registry.register(
            "gateway_requests",
            "Gateway requests by route, status and decision",
            gateway_requests.clone(),
        );
        registry.register(
            "gateway_request_duration_seconds",
            "Gateway request latency by route (until the response headers)",
            gateway_duration.clone(),
        );
        registry.register(
            "gateway_upstream_duration_seconds",
            "Upstream latency by route (until the upstream's response headers)",
            gateway_upstream_duration.clone(),
        );
        registry.register(
            "ratelimit_decisions",
            "Rate-limiter decisions by limiter and result",
            ratelimit_decisions.clone(),
        );
        registry.register(
            "brute_force_refused",
            "Requests refused because their address is blocked after failed authentications",
            brute_force_refused.clone(),
        );
        registry.register(
            "brute_force_blocks",
            "Client addresses blocked after repeated failed authentications",
            brute_force_blocks.clone(),
        );
        registry.register(
            "gateway_open_connections",
            "Open client connections of the gateway listener",
            gateway_open_connections.clone(),
        );
        let cache_hit = cache_lookups
            .get_or_create(&ResultLabel { result: "hit" })
            .clone();
        let cache_miss = cache_lookups
            .get_or_create(&ResultLabel { result: "miss" })
            .clone();
        let listeners = ListenerMetrics::default();
        listeners.register(&mut registry);
        audit.register(&mut registry);
        let events = EventsMetrics::default();
        events.register(&mut registry);
        Self {
            audit,
            events,
            registry,
            gateway_requests,
            gateway_duration,
            gateway_upstream_duration,
            ratelimit_decisions,
            brute_force_refused,
            brute_force_blocks,
            gateway_open_connections,
            listeners,
            http_requests,
            http_duration,
            verify_decisions,
            auth_failures,
            cache_hit,
            cache_miss,
            cache_lookups,
            usage_flush_errors,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// `api` or `gateway`.
    pub listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReason {
    pub listener: &'static str,
    pub reason: &'static str,
}

/// The listeners' metrics (registered with the others).
#[derive(Debug, Clone, Default)]
pub struct ListenerMetrics {
    pub open: Family<ListenerLabel, Gauge>,
    /// Connections closed at accept for being over a cap, by `reason`.
    pub refused: Family<ListenerReason, Counter>,
    /// Connections closed by their header-read or idle deadline, by `reason`.
    pub timed_out: Family<ListenerReason, Counter>,
    /// Request bodies cut for stalling.
    pub body_timeouts: Family<ListenerLabel, Counter>,
}

impl ListenerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "listener_open_connections",
            "Open client connections by listener",
            self.open.clone(),
        );
        registry.register(
            "listener_refused_connections",
            "Connections closed at accept for being over a connection cap, by listener and cap",
            self.refused.clone(),
        );
        registry.register(
            "listener_timed_out_connections",
            "Connections closed by the header-read or idle timeout, by listener and reason",
            self.timed_out.clone(),
        );
        registry.register(
            "listener_body_timeouts",
            "Request bodies cut because the client stalled longer than the body-read timeout",
            self.body_timeouts.clone(),
        );
    }
}

/// Counters of the event pipeline (on `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct EventsMetrics {
    /// Events stored by this node.
    pub published: Counter,
    /// Publishes that failed (their events are lost; logged).
    pub publish_failures: Counter,
    /// Open SSE streams.
    pub sse_subscribers: Gauge,
    /// SSE clients closed because they fell behind their buffer.
    pub sse_overflows: Counter,
}

impl EventsMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "events_published",
            "Events stored by this node",
            self.published.clone(),
        );
        registry.register(
            "events_publish_failures",
            "Event publishes that failed",
            self.publish_failures.clone(),
        );
        registry.register(
            "events_sse_subscribers",
            "Open SSE event streams",
            self.sse_subscribers.clone(),
        );
        registry.register(
            "events_sse_overflows",
            "SSE clients told to reconnect because they fell behind",
            self.sse_overflows.clone(),
        );
    }
}
