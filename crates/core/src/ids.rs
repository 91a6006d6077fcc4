//! Object ids: `{kind}_{ulid}` in lower case, so they sort by creation time (cursor pagination).

/// A new id, e.g. `key_01jf…`.
pub fn new_id(kind: &str) -> String {
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
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("key");
        assert!(a < b);
    }
}
