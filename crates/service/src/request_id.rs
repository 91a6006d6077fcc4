//! The id of the request being handled: every log line, error body and record written while it
//! is handled carries it. Set by the HTTP edge for each request ([`scope`]).
use std::{
    fmt,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
};

tokio::task_local! {
    static CURRENT: RequestId;
}

/// A request id: one the client sent (checked by [`well_formed`]), or one generated here, which
/// is a counter written out when it is read (no allocation per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// `req_` + a random prefix chosen at start + the counter in 10 hex digits.
    Generated(u64),
    /// An id the client sent.
    Given(Arc<str>),
}

/// The longest id: 128 for a given one; a generated one is 28 characters.
pub const MAX_LEN: usize = 128;

/// The random part of generated ids, chosen once per process start.
static PREFIX: LazyLock<String> =
    LazyLock::new(|| portcullis_core::ids::new_unordered_id("req")[..18].to_owned());

impl RequestId {
    /// Calls `f` with the id as text, written on the stack for a generated id.
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            Self::Given(s) => f(s),
            Self::Generated(n) => {
                // The prefix, then the counter's low 40 bits in 10 lower-case hex digits.
                let prefix = PREFIX.as_bytes();
                let mut buf = [0u8; 64];
                let len = prefix.len().min(buf.len() - 10);
                buf[..len].copy_from_slice(&prefix[..len]);
                for (i, slot) in buf[len..len + 10].iter_mut().enumerate() {
                    let nibble = (n >> (4 * (9 - i))) & 0xf;
                    *slot = b"0123456789abcdef"[nibble as usize];
                }
                f(std::str::from_utf8(&buf[..len + 10]).unwrap_or_default())
            }
        }
    }
}

/// Calls `f` with `id` as text, or with `None`.
pub fn with_optional<R>(id: Option<&RequestId>, f: impl FnOnce(Option<&str>) -> R) -> R {
    match id {
        Some(id) => id.with_str(|s| f(Some(s))),
        None => f(None),
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Given(s) => f.write_str(s),
            Self::Generated(_) => self.with_str(|s| f.write_str(s)),
        }
    }
}

/// The id of the request being handled, shared (no copy).
pub fn current_shared() -> Option<RequestId> {
    CURRENT.try_with(RequestId::clone).ok()
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(RequestId::to_string).ok()
}

/// Runs `fut` as if it handled a request with id `id` (for tests of log output).
pub async fn scope_for_test<F: std::future::Future>(id: &str, fut: F) -> F::Output {
    CURRENT.scope(RequestId::Given(Arc::from(id)), fut).await
}

/// 1 to 128 characters of `[A-Za-z0-9._:-]`, and no key in them (an id is echoed, logged,
/// forwarded and recorded: a key sent as one is replaced like any malformed id).
pub fn well_formed(v: &str) -> bool {
    (1..=MAX_LEN).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
        && !portcullis_core::key_scan::contains_key(v.as_bytes())
}

/// A new id, unique per process start without shared locks or a random draw per request.
pub fn generate() -> RequestId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RequestId::Generated(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs `fut` as the handling of the request with id `id`: [`current`] returns it inside.
pub async fn scope<F: std::future::Future>(id: RequestId, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// Runs `f` as the handling of the request with id `id`.
pub fn sync_scope<R>(id: RequestId, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct_well_formed_and_written_without_allocation() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 28);
        assert!(text.starts_with("req_"));
        assert!(well_formed(&text));
        assert_eq!(a.with_str(str::to_owned), text);
        let n = 0x12_3456_789a_u64;
        let late = RequestId::Generated(n);
        assert_eq!(late.to_string(), format!("{}{n:010x}", *PREFIX));
        let given = RequestId::Given(Arc::from("abc-1"));
        assert_eq!(given.with_str(str::to_owned), "abc-1");
    }
}
