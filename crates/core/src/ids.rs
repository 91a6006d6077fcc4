//! Object ids: `{kind}_{ulid}` in lower case, so they sort by creation time (cursor pagination).
//! Ids made by one process are strictly increasing, also within one millisecond.
use std::sync::Mutex;

static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

/// A new id, e.g. `key_01jf…`.
pub fn new_id(kind: &str) -> String {
    let id = {
        let mut g = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        // Fails only after 2^80 ids in one millisecond; fall back to a plain ULID then.
        g.get_or_insert_with(ulid::Generator::new)
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
    };
    format!("{kind}_{}", id.to_string().to_ascii_lowercase())
}

/// A new id that need not sort (request ids): no shared state on the request path.
pub fn new_unordered_id(kind: &str) -> String {
    format!(
        "{kind}_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// Is `s` a well-formed id of `kind`? Used to reject malformed path parameters early.
pub fn is_id(kind: &str, s: &str) -> bool {
    s.strip_prefix(kind)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|u| {
            u.len() == 26
                && u.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed_and_ordered() {
        let a = new_id("key");
        assert!(is_id("key", &a));
        assert!(!is_id("adm", &a));
        assert!(!is_id("key", "key_../etc/passwd"));
        let ids: Vec<String> = (0..1000).map(|_| new_id("key")).collect();
        assert!(a < ids[0], "{a} {}", ids[0]);
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing within a millisecond"
        );
    }
}
