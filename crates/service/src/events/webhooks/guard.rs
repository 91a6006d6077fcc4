//! The delivery client's way to an address: names are resolved here and only addresses that
//! [`portcullis_core::outbound::check_ip`] allows are handed to the TCP connector (so a DNS
//! answer that changes between a check and the connection — DNS rebinding — cannot lead
//! inside), and the peer address of every connection made is checked again before a byte is
//! sent. Without `danger_allow_private_webhook_targets`, loopback, private, link-local,
//! unique-local, multicast and the other non-public addresses are never connected to.
use std::{
    fmt,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::Uri;
use hyper_util::{
    client::legacy::connect::{HttpConnector, dns::Name},
    rt::TokioIo,
};
use portcullis_core::outbound::{self, Host};
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The host or the connected address is not a public one (and private targets are not
/// allowed). The text names no address: it is matched by type, and logged.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("webhook target address not allowed ({0})")]
pub struct NotAllowed(pub outbound::Refused);

/// A name could not be resolved (the cause, for the log, is the source).
#[derive(Debug, thiserror::Error)]
#[error("webhook host name not resolved")]
pub struct DnsFailed(#[source] pub std::io::Error);

/// Resolves host names (the system's resolver, or a fixed table in tests).
pub trait Lookup: Send + Sync + fmt::Debug {
    fn lookup(&self, host: String) -> BoxFuture<std::io::Result<Vec<IpAddr>>>;
}

/// The system's resolver (`getaddrinfo` on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> BoxFuture<std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Where deliveries may connect.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `danger_allow_private_webhook_targets`: every address is allowed.
    pub allow_private: bool,
    pub lookup: Arc<dyn Lookup>,
}

impl Policy {
    /// Whether a connection to `ip` may be made.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), NotAllowed> {
        if self.allow_private {
            return Ok(());
        }
        outbound::check_ip(ip).map_err(NotAllowed)
    }

    /// Checks a URL's host before anything is resolved or connected.
    pub fn check_host(&self, host: &str) -> Result<(), NotAllowed> {
        if self.allow_private {
            return Ok(());
        }
        outbound::check_host(host).map(|_| ()).map_err(NotAllowed)
    }

    /// The addresses of `host` that may be connected to: `NotAllowed` when it resolves to
    /// none of those.
    async fn resolve(&self, host: String) -> Result<Vec<SocketAddr>, BoxError> {
        let name = if self.allow_private {
            host
        } else {
            match outbound::check_host(&host).map_err(NotAllowed)? {
                // A legacy IPv4 form (`2130706433`) the connector did not take as an address.
                Host::Ip(ip) => return Ok(vec![SocketAddr::new(ip, 0)]),
                Host::Name(n) => n,
            }
        };
        let all = self.lookup.lookup(name).await.map_err(DnsFailed)?;
        let mut refused = None;
        let allowed: Vec<SocketAddr> = all
            .into_iter()
            .filter(|ip| match self.check_ip(*ip) {
                Ok(()) => true,
                Err(e) => {
                    refused = Some(e);
                    false
                }
            })
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(e)) => Err(e.into()),
            (true, None) => Err(DnsFailed(std::io::Error::other("no address")).into()),
        }
    }
}

/// The resolver handed to the TCP connector: only vetted addresses come out of it.
#[derive(Debug, Clone)]
pub struct VettingResolver(pub Arc<Policy>);

impl Service<Name> for VettingResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move { Ok(policy.resolve(host).await?.into_iter()) })
    }
}

/// The TCP connector with a last check: the address actually connected must be allowed,
/// whatever led to it (an address literal skips the resolver).
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    inner: HttpConnector<VettingResolver>,
    policy: Arc<Policy>,
}

impl GuardedConnector {
    pub fn new(inner: HttpConnector<VettingResolver>, policy: Arc<Policy>) -> Self {
        Self { inner, policy }
    }
}

impl Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let policy = self.policy.clone();
        Box::pin(async move {
            let io = connecting.await?;
            let peer = io.inner().peer_addr()?;
            policy.check_ip(peer.ip())?;
            Ok(io)
        })
    }
}
