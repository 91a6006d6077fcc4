//! The connection pool of one upstream: HTTP/1.1 connections made with hyper's `client::conn`,
//! kept idle (newest first) and reused, with no per-request work beyond taking a connection and
//! giving it back.
//!
//! - A connection goes back to the pool only when its answer's body has been read to the end
//!   ([`PooledBody`]); an answer dropped before its end closes the connection (HTTP/1.1 cannot
//!   abandon a message and keep the connection), as does a request cancelled by its timeout.
//! - An idle connection the upstream closed meanwhile is discarded when taken; if it closes
//!   between being taken and being written to, hyper gives the unsent request back and it goes
//!   out on another connection (never a request that was written, so nothing is sent twice).
//! - At most `max_idle` connections wait idle, each for at most [`IDLE_TIMEOUT`].
use std::{
    fmt, io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::{
    Request, Response,
    body::Incoming,
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long a connection may wait idle in the pool.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The pool of one upstream.
pub struct Pool {
    /// `host:port` to connect to.
    addr: Box<str>,
    connect_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.addr)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

/// Why a request got no answer from the upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    #[error("connecting to the upstream failed: {0}")]
    Connect(#[source] io::Error),
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    #[error("the upstream connection failed: {0}")]
    Http(#[source] hyper::Error),
}

impl PoolError {
    /// Whether no connection could be made (as opposed to one failing during the exchange).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::ConnectTimeout)
    }
}

impl Pool {
    pub fn new(addr: &str, connect_timeout: Duration, max_idle: usize) -> Arc<Self> {
        Arc::new(Self {
            addr: addr.into(),
            connect_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection or a new one.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, PoolError> {
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Some(s) => (s, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let back = Some((Arc::clone(self), sender));
                    return Ok(resp.map(|inner| PooledBody { inner, back }));
                }
                Err(mut e) => match e.take_message() {
                    // Closed before the request was written: another connection takes it.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(PoolError::Http(e.into_error())),
                },
            }
        }
    }

    /// The newest idle connection that is still open.
    async fn checkout(&self) -> Option<SendRequest<Body>> {
        loop {
            let mut idle = {
                let mut list = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                list.pop()?
            };
            if idle.since.elapsed() < IDLE_TIMEOUT && idle.sender.ready().await.is_ok() {
                return Some(idle.sender);
            }
        }
    }

    /// Gives a connection whose exchange is complete back, if there is room.
    fn checkin(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut list = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < self.max_idle {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, PoolError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&*self.addr))
            .await
            .map_err(|_| PoolError::ConnectTimeout)?
            .map_err(PoolError::Connect)?;
        // Small requests and answers go out at once.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection closed with an error");
            }
        });
        Ok(sender)
    }

    /// Connections waiting idle.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// An upstream answer's body: its connection goes back to the pool once the body has been read
/// to its end, and is closed if the body is dropped before.
pub struct PooledBody {
    inner: Incoming,
    back: Option<(Arc<Pool>, SendRequest<Body>)>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((pool, sender)) = self.back.take() {
            pool.checkin(sender);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            // A failed body leaves the connection in no state to reuse.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body with nothing left to read (e.g. `Content-Length: 0`) may never be polled.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}

impl fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpListener,
    };

    /// An upstream answering every request with `answer`, closing after `per_connection`
    /// requests; counts the connections it accepted.
    async fn upstream(answer: &'static [u8], per_connection: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..per_connection {
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(host: &str) -> Request<Body> {
        Request::builder()
            .uri("/x")
            .header("host", host)
            .body(Body::empty())
            .expect("request")
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_was_read() {
        let (addr, accepted) = upstream(OK, usize::MAX).await;
        let pool = Pool::new(&addr, Duration::from_secs(1), 4);
        for _ in 0..5 {
            let resp = pool.send(get(&addr)).await.expect("answer");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn an_unread_answer_closes_its_connection() {
        let (addr, accepted) = upstream(OK, usize::MAX).await;
        let pool = Pool::new(&addr, Duration::from_secs(1), 4);
        for _ in 0..3 {
            let resp = pool.send(get(&addr)).await.expect("answer");
            drop(resp);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced() {
        // One answer per connection, then the upstream closes it.
        let (addr, accepted) = upstream(OK, 1).await;
        let pool = Pool::new(&addr, Duration::from_secs(1), 4);
        for _ in 0..4 {
            let resp = pool.send(get(&addr)).await.expect("answer");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], b"ok");
            // Let the close reach the idle connection.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn at_most_max_idle_connections_wait() {
        let (addr, _) = upstream(OK, usize::MAX).await;
        let pool = Pool::new(&addr, Duration::from_secs(1), 2);
        let answers = futures_util::future::join_all((0..5).map(|_| pool.send(get(&addr)))).await;
        for a in answers {
            a.expect("answer")
                .into_body()
                .collect()
                .await
                .expect("body");
        }
        assert_eq!(pool.idle(), 2);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let pool = Pool::new(&addr, Duration::from_secs(1), 2);
        let err = pool.send(get(&addr)).await.expect_err("no upstream");
        assert!(err.is_connect(), "{err}");
    }
}
