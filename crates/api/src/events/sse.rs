//! `GET /v1/events`: the authenticated Server-Sent Events stream.
//!
//! An admin key with `events:read` reads its tenant's events (a root key every tenant's and the
//! deployment's own, or one tenant's with `?tenant=`). Each event is one SSE frame: `id:` the
//! event id, `event:` its type, `data:` the event as JSON. The stream opens with `retry:`, sends a
//! comment heartbeat after `heartbeat_seconds` without an event, and resumes after the id in a
//! `Last-Event-ID` header (replay of the stored events, then live, no gap, no duplicate).
//!
//! A client that reads too slowly fills its bounded buffer: it then gets one last frame,
//! `event: reconnect` carrying the id to resume from, and the stream ends. The server never waits
//! for a client nor keeps more than `buffer` events for it. The same frame ends every stream at
//! shutdown (reason `shutdown`), when the backend fails (reason `unavailable`), and within the
//! change feed's poll interval when the stream's admin key is revoked (reason `revoked`) or no
//! longer allows the stream (reason `forbidden`: `events:read` or its tenant binding changed).
//!
//! Open streams are capped in all (`max_subscribers`, 503 `too_many_subscribers`), per tenant
//! read (`max_per_tenant`) and per admin key (`max_per_key`), both 429 `too_many_streams`: one
//! tenant or one key cannot take every place.
use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event as Frame, KeepAlive, Sse},
    },
};
use portcullis_events::{
    Event, Scope, TypeSet,
    backend::{Delivery, Subscription, subscribe},
};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::sync::watch;

use crate::{auth::Admin, error::ApiError, extract::Query, ops, state::AppState};
use portcullis_service::events::streams::{OwnerCaps, OwnerPlace, Place};

/// The admin scope the stream requires.
pub const SCOPE: &str = "events:read";

/// The header a client resumes with (browsers' `EventSource` sends it when it reconnects).
pub static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The frame type that ends a stream and tells the client to reconnect.
pub const RECONNECT: &str = "reconnect";

/// `GET /v1/events` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Comma-separated event types (default: every type).
    pub types: Option<String>,
    /// A root key's narrowing to one tenant (a tenant-bound key may name only its own).
    pub tenant: Option<String>,
}

fn too_many_streams(retry_ms: u64) -> Response {
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_streams",
        "this tenant or this key has as many event streams open as it may; close one first",
    )
    .into_response();
    let secs = retry_ms.div_ceil(1_000).max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn invalid_query(message: &'static str) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// Reads `Last-Event-ID`: absent, or one header of decimal digits that fit a u64.
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_last_event_id",
            "Last-Event-ID must be the decimal id of an event",
        )
    };
    let mut values = headers.get_all(&LAST_EVENT_ID).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<u64>().map(Some).map_err(|_| bad())
}

/// What `admin` may read, narrowed by `q`.
async fn scope(state: &AppState, admin: &Admin, q: &EventsQuery) -> Result<Scope, ApiError> {
    let types = match q.types.as_deref() {
        None => TypeSet::all(),
        Some(list) => TypeSet::parse_list(list)
            .map_err(|_| invalid_query("types lists an unknown event type"))?,
    };
    let named = q
        .tenant
        .as_deref()
        .map(str::to_owned)
        .or_else(|| admin.tenant_header.as_ref().map(|t| t.as_str().to_owned()));
    let scope = match (&named, &admin.key.tenant_id) {
        (Some(t), _) => {
            let t = admin.tenant(t)?;
            ops::load_tenant(state.store.as_ref(), &t).await?;
            Scope::tenant(t)
        }
        (None, Some(own)) => Scope::tenant(own.clone()),
        (None, None) => Scope::global(),
    };
    Ok(scope.with_types(types))
}

/// `GET /v1/events`.
pub async fn stream(
    State(state): State<AppState>,
    admin: Admin,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin.require(SCOPE)?;
    let after = last_event_id(&headers)?;
    let scope = scope(&state, &admin, &q).await?;
    let events = &state.events;
    let (Some(backend), Some(config)) = (events.backend(), events.config()) else {
        return Err(ApiError::not_found());
    };
    let sse = &config.sse;
    let caps = OwnerCaps {
        per_tenant: sse.max_per_tenant,
        per_key: sse.max_per_key,
    };
    let tenant = scope.tenant.as_ref().map(|t| t.as_str());
    let Some(owner) = OwnerPlace::take(events.streams(), tenant, &admin.key.id, caps) else {
        return Ok(too_many_streams(sse.retry_ms));
    };
    let closing = events.closing();
    let place = match Place::take(
        events.streams(),
        &events.metrics().sse_subscribers,
        sse.max_subscribers,
    ) {
        Some(p) if !*closing.borrow() => p,
        _ => {
            let mut resp = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_subscribers",
                "too many event streams are open; retry later",
            )
            .into_response();
            let secs = sse.retry_ms.div_ceil(1_000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Ok(resp);
        }
    };
    let feed = Feed {
        sub: subscribe(backend.clone(), scope, after, sse.buffer).await,
        closing,
        credential: Credential {
            changes: state.changes.subscribe(),
            state: state.clone(),
            hash: admin.hash,
            tenant: admin.key.tenant_id.clone(),
            pending: false,
        },
        position: after,
        retry: Some(Duration::from_millis(sse.retry_ms)),
        done: false,
        overflows: events.metrics().sse_overflows.clone(),
        _place: (place, owner),
    };
    let frames = futures_util::stream::unfold(feed, Feed::step);
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(sse.heartbeat_seconds))
        .text("heartbeat");
    let mut resp = Sse::new(frames).keep_alive(keep_alive).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(resp)
}

/// One client's stream: its subscription, and what it has been sent.
struct Feed {
    sub: Subscription,
    closing: watch::Receiver<bool>,
    credential: Credential,
    /// The id the client resumes after: the last event sent, or its `Last-Event-ID`.
    position: Option<u64>,
    /// The `retry:` frame, until it is sent (first).
    retry: Option<Duration>,
    /// The last frame (a `reconnect`) was sent.
    done: bool,
    overflows: Counter,
    _place: (Place, OwnerPlace),
}

impl Feed {
    async fn step(mut self) -> Option<(Result<Frame, Infallible>, Self)> {
        if let Some(retry) = self.retry.take() {
            return Some((Ok(Frame::default().retry(retry)), self));
        }
        if self.done {
            return None;
        }
        // A check cut short by an event last time is finished first, so a busy stream cannot
        // put it off for ever.
        if self.credential.pending
            && let Some(reason) = self.credential.check_pending().await
        {
            let last = self.position;
            return Some((Ok(self.last_frame(reason, last)), self));
        }
        let delivery = tokio::select! {
            biased;
            () = closed(&mut self.closing) => {
                let last = self.position;
                return Some((Ok(self.last_frame("shutdown", last)), self));
            }
            reason = self.credential.lost() => {
                let last = self.position;
                return Some((Ok(self.last_frame(reason, last)), self));
            }
            d = self.sub.next() => d,
        };
        let frame = match delivery {
            Some(Delivery::Event(e)) => {
                self.position = Some(e.id);
                frame(&e)
            }
            Some(Delivery::Overflow { last_id }) => {
                self.overflows.inc();
                self.last_frame("slow_consumer", Some(last_id))
            }
            Some(Delivery::Failed { last_id }) => self.last_frame("unavailable", Some(last_id)),
            // The live feed closed: the backend went away.
            None => {
                let last = self.position;
                self.last_frame("unavailable", last)
            }
        };
        Some((Ok(frame), self))
    }

    /// The `reconnect` frame that ends the stream: the client resumes after `last` (its
    /// `Last-Event-ID` becomes it), or from now on when nothing was sent yet.
    fn last_frame(&mut self, reason: &str, last: Option<u64>) -> Frame {
        self.done = true;
        let data = serde_json::json!({
            "reason": reason,
            "last_event_id": last.map(|id| id.to_string()),
        });
        let frame = Frame::default().event(RECONNECT).data(data.to_string());
        match last {
            Some(id) => frame.id(id.to_string()),
            None => frame,
        }
    }
}

/// The admin key a stream was opened with, checked again after every change the server hears
/// of (its own, or another writer's through the change feed).
struct Credential {
    changes: watch::Receiver<u64>,
    state: AppState,
    hash: portcullis_core::hash::KeyHash,
    /// The tenant the key was bound to when the stream opened.
    tenant: Option<portcullis_core::tenant::TenantId>,
    /// A change was seen and not checked yet (a check cut short by an event is done again).
    pending: bool,
}

impl Credential {
    /// Resolves with the reason the stream must end, once the key is revoked or narrowed.
    async fn lost(&mut self) -> &'static str {
        loop {
            if !self.pending {
                if self.changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                self.pending = true;
            }
            let verdict = self.check().await;
            self.pending = false;
            if let Some(reason) = verdict {
                return reason;
            }
        }
    }

    async fn check_pending(&mut self) -> Option<&'static str> {
        let verdict = self.check().await;
        self.pending = false;
        verdict
    }

    async fn check(&self) -> Option<&'static str> {
        let needed = portcullis_core::scope::Scope::parse(SCOPE)?;
        match crate::auth::admin_now(&self.state, self.hash).await {
            Ok(None) => Some("revoked"),
            Ok(Some(k))
                if k.tenant_id != self.tenant || !k.scopes.iter().any(|s| s.covers(&needed)) =>
            {
                Some("forbidden")
            }
            Ok(Some(_)) => None,
            // The store cannot say: the next change checks again.
            Err(e) => {
                tracing::warn!(error = ?e, "cannot check an event stream's admin key");
                None
            }
        }
    }
}

/// An event as an SSE frame.
fn frame(e: &Event) -> Frame {
    Frame::default()
        .id(e.id.to_string())
        .event(e.kind.as_str())
        .data(e.to_json())
}

/// Resolves once the server is shutting down (never when the signal is gone).
async fn closed(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
