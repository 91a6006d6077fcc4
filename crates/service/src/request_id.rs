//! The id of the request being handled: every log line, error body and record written while it
//! is handled carries it. Set by the HTTP edge for each request ([`scope`]).
use std::sync::{
    Arc, LazyLock,
    atomic::{AtomicU64, Ordering},
};

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// The id of the request being handled, shared (no copy).
pub fn current_shared() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.to_string()).ok()
}

/// Runs `fut` as if it handled a request with id `id` (for tests of log output).
pub async fn scope_for_test<F: std::future::Future>(id: &str, fut: F) -> F::Output {
    CURRENT.scope(Arc::from(id), fut).await
}

/// 1 to 128 characters of `[A-Za-z0-9._:-]`, and no key in them (an id is echoed, logged,
/// forwarded and recorded: a key sent as one is replaced like any malformed id).
pub fn well_formed(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
        && !portcullis_core::key_scan::contains_key(v.as_bytes())
}

/// Generated ids: `req_` + a random prefix chosen at start + a counter. Unique per process start
/// without shared locks or a random draw per request.
pub fn generate() -> Arc<str> {
    static PREFIX: LazyLock<String> =
        LazyLock::new(|| portcullis_core::ids::new_unordered_id("req")[..18].to_owned());
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{}{n:010x}", *PREFIX))
}

/// Runs `fut` as the handling of the request with id `id`: [`current`] returns it inside.
pub async fn scope<F: std::future::Future>(id: Arc<str>, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// Runs `f` as the handling of the request with id `id`.
pub fn sync_scope<R>(id: Arc<str>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}
