//! The HTTP side of a delivery: one POST, no redirect followed, bounded by a timeout.
//!
//! `https://` goes through rustls with the `ring` provider given explicitly (the workspace's
//! only provider: nothing depends on a process-wide default), trusting the system's roots, or
//! Mozilla's (webpki-roots) when the system has none.
use std::{sync::Arc, time::Duration};

use axum::http::{
    HeaderValue, Method, Request, Uri,
    header::{CONTENT_TYPE, USER_AGENT},
};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use portcullis_events::webhook::{Attempt, HEADER};

type Body = Full<axum::body::Bytes>;

/// The `User-Agent` of deliveries.
pub const USER_AGENT_VALUE: &str = "portcullis-webhooks";
pub const EVENT_ID_HEADER: &str = "Portcullis-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "Portcullis-Event-Type";
pub const DELIVERY_ID_HEADER: &str = "Portcullis-Delivery-Id";

/// Why an attempt got no HTTP answer, in a word (stored as the delivery's `last_error`, and
/// in its audit record: never a detail of ours or the receiver's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the timeout.
    Timeout,
    /// The connection (TCP or TLS) could not be made.
    Connect,
    /// The connection broke before an answer.
    Request,
    /// The stored URL is not usable.
    InvalidUrl,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Request => "request",
            Self::InvalidUrl => "invalid_url",
        }
    }
}

/// Sends deliveries. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    timeout: Duration,
}

impl Sender {
    /// A sender whose attempts end after `timeout`. `Err` (for the log) when no TLS roots
    /// could be loaded.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
                Ok(b) => b,
                Err(_) => HttpsConnectorBuilder::new()
                    .with_provider_and_webpki_roots(provider)
                    .map_err(|e| format!("webhook TLS configuration: {e}"))?,
            };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        Ok(Self { client, timeout })
    }

    /// POSTs `attempt`'s body with `signature`; the answer's status, or why there was none.
    /// The answer's body is not read.
    pub async fn post(&self, attempt: &Attempt, signature: &str) -> Result<u16, Failure> {
        let uri: Uri = attempt.url.parse().map_err(|_| Failure::InvalidUrl)?;
        let header = |v: &str| HeaderValue::from_str(v).map_err(|_| Failure::InvalidUrl);
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
            .header(HEADER, header(signature)?)
            .header(EVENT_ID_HEADER, header(&attempt.event_id.to_string())?)
            .header(EVENT_TYPE_HEADER, header(&attempt.event_type)?)
            .header(DELIVERY_ID_HEADER, header(&attempt.delivery_id)?)
            .body(Full::new(axum::body::Bytes::from(attempt.body.clone())))
            .map_err(|_| Failure::InvalidUrl)?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) if e.is_connect() => Err(Failure::Connect),
            Ok(Err(_)) => Err(Failure::Request),
            Ok(Ok(resp)) => Ok(resp.status().as_u16()),
        }
    }
}

/// `url` without its query (which may hold a receiver's token), for logs and audit records.
pub fn redacted_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_redacted() {
        assert_eq!(
            redacted_url("https://h.example/hook?token=abc"),
            "https://h.example/hook?…"
        );
        assert_eq!(
            redacted_url("https://h.example/hook"),
            "https://h.example/hook"
        );
    }

    #[tokio::test]
    async fn a_sender_is_built_and_reports_a_refused_connection() {
        let sender = Sender::new(Duration::from_secs(2)).expect("sender");
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let attempt = Attempt {
            delivery_id: "whd_x".into(),
            endpoint_id: "whk_x".into(),
            tenant: portcullis_core::tenant::TenantId::parse("acme").unwrap(),
            event_id: 1,
            event_type: "key.created".into(),
            body: "{}".into(),
            url: format!("http://127.0.0.1:{port}/hook"),
            secrets: Vec::new(),
            attempts: 0,
            retry_from: time::OffsetDateTime::UNIX_EPOCH,
            claim: 1,
        };
        assert_eq!(
            sender.post(&attempt, "t=1,v1=00").await,
            Err(Failure::Connect)
        );
        let bad = Attempt {
            url: "not a url".into(),
            ..attempt
        };
        assert_eq!(
            sender.post(&bad, "t=1,v1=00").await,
            Err(Failure::InvalidUrl)
        );
    }
}
