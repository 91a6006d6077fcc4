//! What one connection is doing, for its deadlines: waiting for a request (idle), receiving a
//! request head, or busy with requests. A connection starts receiving a head (a client must send
//! its first request within the header-read timeout); the first byte after an idle pause starts
//! the head clock again; while a request is in progress (from its head until its response body
//! is written or dropped) the connection has no deadline of its own — a stalled request body is
//! cut by [`super::body::IdleBody`], and handlers bound their own waits.
use std::{
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Notify,
    time::Instant,
};

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle(Instant),
    Head(Instant),
    Busy,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    phase: Phase,
}

/// Why a connection was closed by its deadline (the `reason` label of the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    HeaderTimeout,
    IdleTimeout,
}

impl Expired {
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::HeaderTimeout => "header_read_timeout",
            Expired::IdleTimeout => "idle_timeout",
        }
    }
}

/// The two connection deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// One connection's activity, shared by its socket, its service and its watchdog.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    /// Idle and nothing read since: the next read starts a head.
    waiting: AtomicBool,
    changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                in_flight: 0,
                phase: Phase::Head(Instant::now()),
            }),
            waiting: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        if self.waiting.swap(false, Ordering::AcqRel) {
            let mut s = self.lock();
            if s.in_flight == 0 && matches!(s.phase, Phase::Idle(_)) {
                s.phase = Phase::Head(Instant::now());
                drop(s);
                self.changed.notify_one();
            }
        }
    }

    /// A request's head was read: the connection is busy until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.phase = Phase::Busy;
        self.waiting.store(false, Ordering::Release);
        drop(s);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    fn end(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.phase = Phase::Idle(Instant::now());
            self.waiting.store(true, Ordering::Release);
        }
        drop(s);
        self.changed.notify_one();
    }

    /// When the current phase ends the connection, and why; `None` while busy.
    pub fn deadline(&self, t: Timeouts) -> Option<(Instant, Expired)> {
        match self.lock().phase {
            Phase::Busy => None,
            Phase::Idle(since) => Some((since + t.idle, Expired::IdleTimeout)),
            Phase::Head(since) => Some((since + t.header, Expired::HeaderTimeout)),
        }
    }

    /// Resolves when the phase may have changed (the deadline must be read again).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// A request in progress; its drop makes the connection idle again (when it was the last).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A client socket that reports reads to its [`Activity`]; it holds its connection's place
/// among the listener's caps while open.
#[derive(Debug)]
pub struct Watched<S> {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: S,
}

impl<S> Watched<S> {
    pub fn new(stream: TcpStream, activity: Arc<Activity>, slot: S) -> Self {
        Self {
            stream,
            activity,
            _slot: slot,
        }
    }
}

impl<S: Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl<S: Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn phases_set_the_deadline() {
        let a = Activity::new();
        let start = Instant::now();
        assert_eq!(
            a.deadline(T),
            Some((start + T.header, Expired::HeaderTimeout)),
            "a new connection must send its head in time"
        );
        a.on_read();
        assert_eq!(a.deadline(T).map(|d| d.0), Some(start + T.header));
        let req = a.begin();
        let req2 = a.begin();
        assert_eq!(a.deadline(T), None, "busy: no deadline");
        drop(req);
        assert_eq!(a.deadline(T), None, "still one request in progress");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(req2);
        let idle = Instant::now();
        assert_eq!(a.deadline(T), Some((idle + T.idle, Expired::IdleTimeout)));
        tokio::time::advance(Duration::from_secs(30)).await;
        a.on_read();
        let head = Instant::now();
        assert_eq!(
            a.deadline(T),
            Some((head + T.header, Expired::HeaderTimeout)),
            "the first byte after a pause starts the head clock"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        a.on_read();
        assert_eq!(a.deadline(T).map(|d| d.0), Some(head + T.header));
    }
}
