//! Scopes: `resource:action`, where either segment may be `*` on a granted scope.
//! Required scopes are all-of. A key created without scopes has none.
//!
//! A scope can also be a *pattern* bounding other scopes (a tenant's `allowed_scopes`):
//! [`Scope::is_within`] says whether every scope one grants is granted by the other.
use serde::{Deserialize, Serialize};

use crate::{error::ValidationError, limits};

/// A validated scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Scope(String);

fn valid_segment(s: &str) -> bool {
    s == "*"
        || (!s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            }))
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > limits::MAX_SCOPE_LEN {
            return None;
        }
        let (resource, action) = s.split_once(':')?;
        (valid_segment(resource) && valid_segment(action)).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parts(&self) -> (&str, &str) {
        self.0.split_once(':').unwrap_or((&self.0, ""))
    }

    /// Does this (granted) scope cover `required`? A `*` segment covers any value; otherwise the
    /// segment must match exactly (so a required `invoices:*` needs a granted `invoices:*`).
    pub fn covers(&self, required: &Scope) -> bool {
        let (gr, ga) = self.parts();
        let (rr, ra) = required.parts();
        (gr == "*" || gr == rr) && (ga == "*" || ga == ra)
    }

    /// Is this scope inside `pattern`: does `pattern` grant everything this scope grants?
    ///
    /// Segment by segment: a `*` pattern segment contains any segment, a concrete pattern
    /// segment only itself. A `*` segment of this scope is therefore inside a `*` pattern
    /// segment only (`invoices:*` is not inside `invoices:read`, `*:*` only inside `*:*`).
    /// This is [`Scope::covers`] read the other way round, and exactly the set inclusion of the
    /// concrete scopes both match (a property test checks it).
    pub fn is_within(&self, pattern: &Scope) -> bool {
        pattern.covers(self)
    }
}

/// The index of the first scope of `scopes` that is inside none of `patterns`, if any.
pub fn first_outside(scopes: &[Scope], patterns: &[Scope]) -> Option<usize> {
    scopes
        .iter()
        .position(|s| !patterns.iter().any(|p| s.is_within(p)))
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("invalid scope"))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validates a list of scopes: each well-formed, at most [`limits::MAX_SCOPES`]; sorted and
/// de-duplicated.
pub fn parse_scopes<S: AsRef<str>>(input: &[S]) -> Result<Vec<Scope>, ValidationError> {
    if input.len() > limits::MAX_SCOPES {
        return Err(ValidationError::TooManyScopes);
    }
    let mut out = input
        .iter()
        .enumerate()
        .map(|(index, s)| Scope::parse(s.as_ref()).ok_or(ValidationError::InvalidScope { index }))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// The required scopes that `granted` does not cover (empty = all covered).
pub fn missing<'a>(granted: &[Scope], required: &'a [Scope]) -> Vec<&'a Scope> {
    required
        .iter()
        .filter(|r| !granted.iter().any(|g| g.covers(r)))
        .collect()
}

/// Scopes admin keys can hold.
pub const ADMIN_SCOPES: &[&str] = &[
    "tenants:read",
    "tenants:write",
    "keys:read",
    "keys:write",
    "keys:verify",
    "audit:read",
    "events:read",
    "webhooks:read",
    "webhooks:write",
];

/// Validates admin scopes: each must be well-formed and cover at least one known admin scope.
pub fn parse_admin_scopes<S: AsRef<str>>(input: &[S]) -> Result<Vec<Scope>, ValidationError> {
    let scopes = parse_scopes(input)?;
    for (index, s) in input.iter().enumerate() {
        let parsed = Scope::parse(s.as_ref()).ok_or(ValidationError::InvalidScope { index })?;
        let known = ADMIN_SCOPES
            .iter()
            .filter_map(|a| Scope::parse(a))
            .any(|a| parsed.covers(&a));
        if !known {
            return Err(ValidationError::InvalidAdminScope { index });
        }
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(x: &str) -> Scope {
        Scope::parse(x).expect("valid scope")
    }

    #[test]
    fn matching() {
        assert!(s("invoices:read").covers(&s("invoices:read")));
        assert!(!s("invoices:read").covers(&s("invoices:write")));
        assert!(s("invoices:*").covers(&s("invoices:write")));
        assert!(!s("invoices:*").covers(&s("customers:read")));
        assert!(s("*:read").covers(&s("customers:read")));
        assert!(!s("*:read").covers(&s("customers:write")));
        assert!(s("*:*").covers(&s("a:b")));
        assert!(!s("invoices:read").covers(&s("invoices:*")));
        assert!(s("invoices:*").covers(&s("invoices:*")));
    }

    #[test]
    fn parsing() {
        for bad in [
            "",
            "invoices",
            ":read",
            "invoices:",
            "a:b:c",
            "A:b",
            "a b:c",
            "**:x",
        ] {
            assert!(Scope::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            parse_scopes(&["b:x", "a:y", "b:x"]).expect("valid"),
            vec![s("a:y"), s("b:x")]
        );
        assert_eq!(
            parse_scopes(&["a:b", "nope"]),
            Err(ValidationError::InvalidScope { index: 1 })
        );
        let many: Vec<String> = (0..=limits::MAX_SCOPES)
            .map(|i| format!("r{i}:read"))
            .collect();
        assert_eq!(parse_scopes(&many), Err(ValidationError::TooManyScopes));
    }

    #[test]
    fn all_of_semantics() {
        let granted = vec![s("invoices:read"), s("customers:*")];
        let required = vec![s("invoices:read"), s("customers:write")];
        assert!(missing(&granted, &required).is_empty());
        let required = vec![s("invoices:read"), s("invoices:write")];
        assert_eq!(missing(&granted, &required), vec![&s("invoices:write")]);
        assert_eq!(missing(&[], &required).len(), 2, "no scopes means nothing");
        assert!(missing(&[], &[]).is_empty());
    }

    #[test]
    fn admin_scopes() {
        assert!(parse_admin_scopes(&["keys:read", "keys:*"]).is_ok());
        assert_eq!(
            parse_admin_scopes(&["keys:read", "invoices:read"]),
            Err(ValidationError::InvalidAdminScope { index: 1 })
        );
    }

    #[test]
    fn within_patterns() {
        assert!(s("invoices:read").is_within(&s("invoices:read")));
        assert!(s("invoices:read").is_within(&s("invoices:*")));
        assert!(s("invoices:read").is_within(&s("*:read")));
        assert!(s("invoices:read").is_within(&s("*:*")));
        assert!(s("invoices:*").is_within(&s("invoices:*")));
        assert!(s("invoices:*").is_within(&s("*:*")));
        assert!(s("*:read").is_within(&s("*:read")));
        assert!(s("*:*").is_within(&s("*:*")));
        // A wildcard segment is inside a wildcard pattern segment only.
        assert!(!s("invoices:*").is_within(&s("invoices:read")));
        assert!(!s("invoices:*").is_within(&s("*:read")));
        assert!(!s("*:read").is_within(&s("invoices:*")));
        assert!(!s("*:*").is_within(&s("invoices:*")));
        assert!(!s("*:*").is_within(&s("*:read")));
        assert!(!s("invoices:write").is_within(&s("invoices:read")));
        assert!(!s("customers:read").is_within(&s("invoices:*")));

        let allowed = vec![s("invoices:*"), s("*:read")];
        assert_eq!(
            first_outside(&[s("invoices:write"), s("files:read")], &allowed),
            None
        );
        assert_eq!(
            first_outside(&[s("files:read"), s("files:write")], &allowed),
            Some(1)
        );
        assert_eq!(first_outside(&[s("*:*")], &allowed), Some(0));
        assert_eq!(first_outside(&[], &allowed), None);
        assert_eq!(
            first_outside(&[s("a:b")], &[]),
            Some(0),
            "no patterns: nothing inside"
        );
    }

    /// A scope from a small alphabet, so that generated scopes often share segments.
    fn small_scope() -> impl Strategy<Value = Scope> {
        let seg = prop_oneof![Just("*"), Just("a"), Just("b"), Just("c")];
        (seg.clone(), seg).prop_map(|(r, a)| s(&format!("{r}:{a}")))
    }

    /// Every concrete scope of the small alphabet (plus one no pattern names) that `x` grants.
    fn granted(x: &Scope) -> Vec<Scope> {
        let segs = ["a", "b", "c", "d"];
        segs.iter()
            .flat_map(|r| segs.iter().map(move |a| s(&format!("{r}:{a}"))))
            .filter(|c| x.covers(c))
            .collect()
    }

    proptest! {
        /// `is_within` is exactly inclusion of what is granted: `a` is inside `p` if and only if
        /// every concrete scope `a` grants, `p` grants too.
        #[test]
        fn within_is_inclusion_of_granted_scopes(a in small_scope(), p in small_scope()) {
            let included = granted(&a).iter().all(|c| p.covers(c));
            prop_assert_eq!(a.is_within(&p), included, "{} within {}", a, p);
        }

        /// Inside is a partial order: reflexive and transitive.
        #[test]
        fn within_is_reflexive_and_transitive(a in small_scope(), b in small_scope(), c in small_scope()) {
            prop_assert!(a.is_within(&a));
            if a.is_within(&b) && b.is_within(&c) {
                prop_assert!(a.is_within(&c));
            }
        }

        /// A key whose scopes are all inside the patterns can never pass a route requirement
        /// that the patterns themselves would not pass.
        #[test]
        fn scopes_inside_patterns_grant_no_more(
            scopes in proptest::collection::vec(small_scope(), 0..4),
            patterns in proptest::collection::vec(small_scope(), 0..4),
            required in small_scope(),
        ) {
            if first_outside(&scopes, &patterns).is_none() && scopes.iter().any(|g| g.covers(&required)) {
                prop_assert!(patterns.iter().any(|p| p.covers(&required)));
            }
        }

        #[test]
        fn wildcard_covers_every_concrete_scope(r in "[a-z][a-z0-9_]{0,10}", a in "[a-z][a-z0-9_]{0,10}") {
            let req = s(&format!("{}:{}", r, a));
            prop_assert!(s("*:*").covers(&req));
            let by_resource = s(&format!("{}:*", r));
            let by_action = s(&format!("*:{}", a));
            prop_assert!(by_resource.covers(&req));
            prop_assert!(by_action.covers(&req));
            prop_assert!(req.covers(&req));
        }

        #[test]
        fn concrete_scope_covers_only_itself(a in "[a-z]{1,6}:[a-z]{1,6}", b in "[a-z]{1,6}:[a-z]{1,6}") {
            prop_assert_eq!(s(&a).covers(&s(&b)), a == b);
        }
    }
}
