//! The HTTP side of a delivery: one POST, no redirect followed, bounded by a timeout, only to
//! addresses the [`guard`](super::guard) allows (public ones, unless
//! `danger_allow_private_webhook_targets`).
//!
//! `https://` goes through rustls with the `ring` provider given explicitly (the workspace's
//! only provider: nothing depends on a process-wide default), trusting the system's roots, or
//! Mozilla's (webpki-roots) when the system has none.
use std::{error::Error as StdError, sync::Arc, time::Duration};

use http::{
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

use super::guard::{DnsFailed, GuardedConnector, Lookup, NotAllowed, Policy, VettingResolver};

type Body = Full<bytes::Bytes>;

/// The `User-Agent` of deliveries.
pub const USER_AGENT_VALUE: &str = "portcullis-webhooks";
pub const EVENT_ID_HEADER: &str = "Portcullis-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "Portcullis-Event-Type";
pub const DELIVERY_ID_HEADER: &str = "Portcullis-Delivery-Id";

/// Why an attempt got no HTTP answer, as a class (stored as the delivery's `last_error`, shown
/// to the tenant, and in the attempt's audit record): never an address, an OS error text or
/// a detail of the receiver's. The detail goes to the server log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The host is, or resolves only to, an address deliveries may not reach.
    AddressNotAllowed,
    /// The host name could not be resolved.
    DnsFailed,
    /// The TCP connection could not be made.
    ConnectFailed,
    /// The TLS handshake failed (certificate, protocol).
    TlsError,
    /// No answer within the timeout.
    Timeout,
    /// The connection broke before an answer.
    RequestFailed,
    /// The stored URL is not usable.
    InvalidUrl,
    /// The endpoint's secret could not be read (see the server log).
    SecretUnavailable,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddressNotAllowed => "address_not_allowed",
            Self::DnsFailed => "dns_failed",
            Self::ConnectFailed => "connect_failed",
            Self::TlsError => "tls_error",
            Self::Timeout => "timeout",
            Self::RequestFailed => "request_failed",
            Self::InvalidUrl => "invalid_url",
            Self::SecretUnavailable => "secret_unavailable",
        }
    }
}

/// The class of an attempt answered with a non-2xx status (its code is stored beside it).
pub const HTTP_STATUS: &str = "http_status";

/// The next error of a chain; an `io::Error` wrapping another error leads to that one (its
/// `source` skips it).
fn next_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(io) = e.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
    {
        return Some(inner);
    }
    e.source()
}

/// The class of a failed request, from the causes it carries.
fn classify(e: &hyper_util::client::legacy::Error) -> Failure {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<NotAllowed>() {
            return Failure::AddressNotAllowed;
        }
        if err.is::<DnsFailed>() {
            return Failure::DnsFailed;
        }
        if err.is::<rustls::Error>() {
            return Failure::TlsError;
        }
        cur = next_cause(err);
    }
    if e.is_connect() {
        Failure::ConnectFailed
    } else {
        Failure::RequestFailed
    }
}

/// Every cause of `e`, for the server log.
fn detail(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = next_cause(e);
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = next_cause(err);
    }
    out
}

/// Sends deliveries. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Sender {
    client: Client<HttpsConnector<GuardedConnector>, Body>,
    policy: Arc<Policy>,
    timeout: Duration,
}

impl Sender {
    /// A sender whose attempts end after `timeout`, reaching private addresses only with
    /// `allow_private`, resolving names with `lookup`. `Err` (for the log) when no TLS roots
    /// could be loaded.
    pub fn new(
        timeout: Duration,
        allow_private: bool,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, String> {
        let policy = Arc::new(Policy {
            allow_private,
            lookup,
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
                Ok(b) => b,
                Err(_) => HttpsConnectorBuilder::new()
                    .with_provider_and_webpki_roots(provider)
                    .map_err(|e| format!("webhook TLS configuration: {e}"))?,
            };
        let mut http = HttpConnector::new_with_resolver(VettingResolver(policy.clone()));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let guarded = GuardedConnector::new(http, policy.clone());
        let connector = builder
            .https_or_http()
            .enable_http1()
            .wrap_connector(guarded);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    /// POSTs `attempt`'s body with `signature`; the answer's status, or why there was none
    /// (the detail of a failure is logged here, with the delivery's ids). The answer's body
    /// is not read.
    pub async fn post(&self, attempt: &Attempt, signature: &str) -> Result<u16, Failure> {
        let uri: Uri = attempt.url.parse().map_err(|_| Failure::InvalidUrl)?;
        let host = uri.host().ok_or(Failure::InvalidUrl)?;
        if let Err(e) = self.policy.check_host(host) {
            self.log_failure(attempt, Failure::AddressNotAllowed, &e);
            return Err(Failure::AddressNotAllowed);
        }
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
            .body(Full::new(bytes::Bytes::from(attempt.body.clone())))
            .map_err(|_| Failure::InvalidUrl)?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => {
                let class = classify(&e);
                self.log_failure(attempt, class, &e);
                Err(class)
            }
            Ok(Ok(resp)) => Ok(resp.status().as_u16()),
        }
    }

    fn log_failure(&self, a: &Attempt, class: Failure, e: &(dyn StdError + 'static)) {
        tracing::warn!(
            tenant = %a.tenant, webhook_id = %a.endpoint_id, delivery_id = %a.delivery_id,
            url = %redacted_url(&a.url), class = class.as_str(), detail = %detail(e),
            "webhook attempt got no answer"
        );
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
    use std::{
        collections::HashMap,
        net::IpAddr,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{super::guard::SystemLookup, *};

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

    /// Names resolved from a table: what an attacker's DNS server would answer.
    #[derive(Debug)]
    struct Table(HashMap<String, Vec<IpAddr>>);

    impl Lookup for Table {
        fn lookup(
            &self,
            host: String,
        ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
            let found = self.0.get(&host).cloned();
            Box::pin(async move { found.ok_or_else(|| std::io::Error::other("no such name")) })
        }
    }

    fn table(entries: &[(&str, &str)]) -> Arc<dyn Lookup> {
        let mut m: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (name, ip) in entries {
            m.entry((*name).to_owned())
                .or_default()
                .push(ip.parse().unwrap());
        }
        Arc::new(Table(m))
    }

    /// A receiver on 127.0.0.1 that answers 204 and counts the connections it accepted.
    async fn receiver() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        (port, accepted)
    }

    fn attempt(url: String) -> Attempt {
        Attempt {
            delivery_id: "whd_x".into(),
            endpoint_id: "whk_x".into(),
            tenant: portcullis_core::tenant::TenantId::parse("acme").unwrap(),
            event_id: 1,
            event_type: "key.created".into(),
            body: "{}".into(),
            url,
            secrets: Vec::new(),
            attempts: 0,
            retry_from: time::OffsetDateTime::UNIX_EPOCH,
            claim: 1,
        }
    }

    #[tokio::test]
    async fn with_private_targets_allowed_failures_are_classified() {
        let sender =
            Sender::new(Duration::from_secs(2), true, Arc::new(SystemLookup)).expect("sender");
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = attempt(format!("http://127.0.0.1:{port}/hook"));
        assert_eq!(
            sender.post(&a, "t=1,v1=00").await,
            Err(Failure::ConnectFailed)
        );
        let bad = attempt("not a url".into());
        assert_eq!(
            sender.post(&bad, "t=1,v1=00").await,
            Err(Failure::InvalidUrl)
        );
        let (port, accepted) = receiver().await;
        let ok = attempt(format!("http://127.0.0.1:{port}/hook"));
        assert_eq!(sender.post(&ok, "t=1,v1=00").await, Ok(204));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // A plaintext server behind an https URL: the handshake fails.
        let tls = attempt(format!("https://127.0.0.1:{port}/hook"));
        assert_eq!(sender.post(&tls, "t=1,v1=00").await, Err(Failure::TlsError));
    }

    #[tokio::test]
    async fn internal_targets_are_never_connected_to() {
        let (port, accepted) = receiver().await;
        let lookup = table(&[
            ("rebind.example.com", "127.0.0.1"),
            ("meta.example.com", "169.254.169.254"),
            ("mixed.example.com", "10.0.0.1"),
            ("mixed.example.com", "::ffff:127.0.0.1"),
        ]);
        let sender = Sender::new(Duration::from_secs(1), false, lookup.clone()).expect("sender");
        for host in [
            "127.0.0.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "2130706433",
            "0x7f.1",
            "localhost",
            "metadata.google.internal",
            "rebind.example.com",
            "meta.example.com",
            "mixed.example.com",
        ] {
            let a = attempt(format!("http://{host}:{port}/hook"));
            assert_eq!(
                sender.post(&a, "t=1,v1=00").await,
                Err(Failure::AddressNotAllowed),
                "{host}"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection was made");
        let a = attempt(format!("http://unknown.example.com:{port}/hook"));
        assert_eq!(sender.post(&a, "t=1,v1=00").await, Err(Failure::DnsFailed));
        // The name's vetted address is the one connected to: with private targets allowed,
        // the table's answer reaches the receiver.
        let sender = Sender::new(Duration::from_secs(1), true, lookup).expect("sender");
        let a = attempt(format!("http://rebind.example.com:{port}/hook"));
        assert_eq!(sender.post(&a, "t=1,v1=00").await, Ok(204));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
