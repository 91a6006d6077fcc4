//! Bodies at the edge of a connection: a request body that fails when the client stalls between
//! chunks longer than the body-read timeout, and a response body that keeps its request counted
//! as in progress until it is written (or dropped).
use std::{
    error::Error as StdError,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::body::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::time::{Sleep, sleep};

use super::activity::InFlight;

/// The error of a request body whose client stopped sending.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data within the body-read timeout")]
pub struct BodyTimeout;

/// Did `err` (or an error it wraps) come from a stalled request body?
pub fn is_body_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A request body with an idle-gap timeout: each wait for the next chunk may last `timeout`.
/// Length and end-of-stream are passed through, so framing is unchanged.
pub struct IdleBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    timeouts: Counter,
}

impl<B> std::fmt::Debug for IdleBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleBody")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, timeout: Duration, timeouts: Counter) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            timeouts,
        }
    }
}

impl<B> HttpBody for IdleBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.sleep = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timeouts.inc();
                Poll::Ready(Some(Err(Box::new(BodyTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request's [`InFlight`] guard.
pub struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> std::fmt::Debug for Tracked<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked").finish_non_exhaustive()
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: HttpBody + Unpin> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_and_a_slow_one_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
            );
        let counter = Counter::default();
        let mut body = IdleBody::new(
            Body::from_stream(stream),
            Duration::from_secs(1),
            counter.clone(),
        );
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                tx.send(Ok(Bytes::from_static(b"x"))).await.expect("send");
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(tx);
        });
        for _ in 0..3 {
            let f = body.frame().await.expect("frame").expect("data in time");
            assert_eq!(f.into_data().expect("data").as_ref(), b"x");
        }
        let err = body.frame().await.expect("frame").expect_err("stalled");
        assert!(is_body_timeout(err.as_ref()));
        assert_eq!(counter.get(), 1);
        feeder.abort();
    }

    #[tokio::test]
    async fn length_passes_through() {
        let body = IdleBody::new(
            Body::from("hello"),
            Duration::from_secs(1),
            Counter::default(),
        );
        assert_eq!(body.size_hint().exact(), Some(5));
        let empty = IdleBody::new(Body::empty(), Duration::from_secs(1), Counter::default());
        assert!(empty.is_end_stream());
    }
}
