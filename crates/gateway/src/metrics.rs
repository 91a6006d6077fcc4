//! The gateway's per-route metric handles, resolved once when a configuration is built: a
//! request records through them without building a label set or taking a family's lock. Rarer
//! answers (refusals, other statuses, requests no route matched) record through the families.
use std::{sync::Arc, time::Duration};

use portcullis_service::metrics::{GatewayLabels, Metrics, RouteName, SharedLabel};
use prometheus_client::metrics::{counter::Counter, histogram::Histogram};

/// The metrics of one route.
#[derive(Debug, Clone)]
pub struct RouteHandles {
    /// `gateway_request_duration_seconds` of the route.
    pub duration: Histogram,
    /// `gateway_upstream_duration_seconds` of the route.
    pub upstream_duration: Histogram,
    /// `gateway_requests_total` of the route's allowed requests answered 200.
    allowed_ok: Counter,
}

impl RouteHandles {
    pub fn of(m: &Metrics, route: &Arc<str>) -> Self {
        let label = RouteName {
            route: SharedLabel(route.clone()),
        };
        Self {
            duration: m.gateway_duration.get_or_create(&label).clone(),
            upstream_duration: m.gateway_upstream_duration.get_or_create(&label).clone(),
            allowed_ok: m
                .gateway_requests
                .get_or_create(&GatewayLabels {
                    route: SharedLabel(route.clone()),
                    status: 200,
                    decision: "allowed",
                })
                .clone(),
        }
    }
}

/// Records an answered request of `route` (named `name`; its handles when it has them).
pub fn observe(
    m: &Metrics,
    name: &Arc<str>,
    handles: Option<&RouteHandles>,
    status: u16,
    decision: &'static str,
    elapsed: Duration,
) {
    let label = || SharedLabel(name.clone());
    match handles {
        Some(h) => h.duration.observe(elapsed.as_secs_f64()),
        None => m
            .gateway_duration
            .get_or_create(&RouteName { route: label() })
            .observe(elapsed.as_secs_f64()),
    }
    match handles {
        Some(h) if status == 200 && decision == "allowed" => {
            h.allowed_ok.inc();
        }
        _ => {
            m.gateway_requests
                .get_or_create(&GatewayLabels {
                    route: label(),
                    status,
                    decision,
                })
                .inc();
        }
    }
}
