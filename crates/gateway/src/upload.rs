//! A request body on its way upstream: counted against the route's limit as it streams, and on
//! upload routes measured (bytes, SHA-256) without being buffered. Going over the limit fails the
//! stream, which aborts the upstream request; the handler then answers 413.
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use sha2::{Digest, Sha256};

/// What was learnt about an upload body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFacts {
    pub bytes: u64,
    pub content_type: Option<String>,
    /// Hex SHA-256 of the whole body; `None` when the body did not arrive whole.
    pub sha256: Option<String>,
    /// The body arrived whole (the client finished sending it within the limit).
    pub complete: bool,
}

/// Receives upload facts (the audit log plugs in here).
pub type UploadSink = Arc<dyn Fn(&str, &str, UploadFacts) + Send + Sync>;

/// The default sink: an info log line (with the request id of the span).
pub fn log_sink() -> UploadSink {
    Arc::new(|route, request_id, f| {
        tracing::info!(
            route,
            request_id,
            bytes = f.bytes,
            content_type = f.content_type.as_deref().unwrap_or(""),
            sha256 = f.sha256.as_deref().unwrap_or(""),
            complete = f.complete,
            "upload measured"
        );
    })
}

/// Set when the body went over its limit.
#[derive(Debug, Clone, Default)]
pub struct Exceeded(Arc<AtomicBool>);

impl Exceeded {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body over the limit")]
struct TooLarge;

struct Measure {
    hasher: Sha256,
    content_type: Option<String>,
    done: Box<dyn FnOnce(UploadFacts) + Send>,
}

/// The body wrapper.
pub struct Metered {
    inner: Body,
    limit: u64,
    seen: u64,
    exceeded: Exceeded,
    measure: Option<Measure>,
    ended: bool,
}

impl std::fmt::Debug for Metered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered")
            .field("limit", &self.limit)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Metered {
    /// Counts `inner` against `limit`; `exceeded` is set if it goes over.
    pub fn new(inner: Body, limit: u64, exceeded: Exceeded) -> Self {
        Self {
            inner,
            limit,
            seen: 0,
            exceeded,
            measure: None,
            ended: false,
        }
    }

    /// Also hashes the body and reports the facts to `done` when it ends (or is dropped).
    pub fn measured(
        mut self,
        content_type: Option<String>,
        done: impl FnOnce(UploadFacts) + Send + 'static,
    ) -> Self {
        self.measure = Some(Measure {
            hasher: Sha256::new(),
            content_type,
            done: Box::new(done),
        });
        self
    }

    fn finish(&mut self, complete: bool) {
        if let Some(m) = self.measure.take() {
            let sha256 = complete.then(|| hex::encode(m.hasher.finalize()));
            (m.done)(UploadFacts {
                bytes: self.seen,
                content_type: m.content_type,
                sha256,
                complete,
            });
        }
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.ended = true;
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.ended = true;
                this.finish(false);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.limit {
                        this.ended = true;
                        this.exceeded.0.store(true, Ordering::Relaxed);
                        this.finish(false);
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    if let Some(m) = this.measure.as_mut() {
                        m.hasher.update(data);
                    }
                }
                // A body of known length may not be polled again after its last bytes.
                if this.inner.is_end_stream() {
                    this.ended = true;
                    this.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::BodyExt;

    use super::*;

    fn chunks(parts: Vec<&'static [u8]>) -> Body {
        let stream = futures_util::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))),
        );
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn measures_while_streaming() {
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        let body = Metered::new(chunks(vec![b"hello ", b"world"]), 100, Exceeded::default())
            .measured(Some("text/plain".into()), move |f| {
                *g.lock().expect("lock") = Some(f);
            });
        let all = body.collect().await.expect("collect").to_bytes();
        assert_eq!(&all[..], b"hello world");
        let f = got.lock().expect("lock").clone().expect("facts");
        assert_eq!(f.bytes, 11);
        assert!(f.complete);
        assert_eq!(
            f.sha256.as_deref(),
            Some("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
        );
    }

    #[tokio::test]
    async fn over_the_limit_fails_and_flags() {
        let exceeded = Exceeded::default();
        let body = Metered::new(chunks(vec![b"12345", b"67890"]), 7, exceeded.clone());
        assert!(body.collect().await.is_err());
        assert!(exceeded.get());
    }
}
