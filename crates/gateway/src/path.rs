//! The canonical request path: computed once, before routing, and the only path the gateway uses
//! afterwards. The route is chosen on it and the upstream is sent it, so no upstream can resolve
//! the request to another path than the one whose requirements were checked.
//!
//! What [`canonical`] does to a path (see `docs/gateway.md`, "Path canonicalisation"):
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; every other escape
//!   stays encoded, its hex digits in upper case. Nothing else is changed (no slash merging, no
//!   dot resolution: what would need them is refused instead).
//! - refused: a path that is not absolute; dot segments in any disguise (`.`, `..`, `%2e%2E`,
//!   `..;x`, `.;x`, and segments made only of dots and spaces); empty segments (`//`; a trailing
//!   `/` is kept); encoded `/` and `\`; raw `\`; NUL and control characters, raw or encoded;
//!   malformed and double-encoded escapes (`%2`, `%zz`, `%252e`); bytes that are not UTF-8 once
//!   decoded.
//! - path parameters (`;` or `%3B` in a segment) are kept, and reported: routing decides whether
//!   the matched route allows them (`Runtime::route_path`).
//!
//! A path that is already canonical is returned borrowed: the common case allocates nothing.
use std::borrow::Cow;

/// Why a path was refused (400 `invalid_path`; [`PathError::message`] is the client's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("the path is not absolute")]
    NotAbsolute,
    #[error("the path has a dot segment")]
    DotSegment,
    #[error("the path has an empty segment")]
    EmptySegment,
    #[error("the path has an encoded slash or backslash")]
    EncodedSeparator,
    #[error("the path has a backslash")]
    Backslash,
    #[error("the path has a control character or a character that must be encoded")]
    InvalidCharacter,
    #[error("the path has a malformed or double-encoded escape")]
    BadEscape,
    #[error("the path is not UTF-8 once decoded")]
    InvalidUtf8,
    #[error("the path has path parameters the route does not allow")]
    Parameters,
    #[error("the path has characters a case-insensitive upstream would change")]
    CaseFolding,
}

impl PathError {
    /// The message the client sees.
    pub fn message(self) -> &'static str {
        match self {
            Self::NotAbsolute => "the path must start with /",
            Self::DotSegment => "the path has a dot segment (., .. or a disguise of them)",
            Self::EmptySegment => "the path has an empty segment (//)",
            Self::EncodedSeparator => "the path has an encoded slash or backslash",
            Self::Backslash => "the path has a backslash",
            Self::InvalidCharacter => "the path has a control or unencoded character",
            Self::BadEscape => "the path has a malformed or double-encoded percent-escape",
            Self::InvalidUtf8 => "the path is not UTF-8 once decoded",
            Self::Parameters => "the path has path parameters (;) this route does not allow",
            Self::CaseFolding => {
                "the path has characters this case-insensitive route does not allow"
            }
        }
    }
}

/// A path in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical<'a> {
    path: Cow<'a, str>,
    parameters: bool,
    folds_to_ascii: bool,
}

impl<'a> Canonical<'a> {
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The path, owned only if canonicalisation changed it.
    pub fn into_cow(self) -> Cow<'a, str> {
        self.path
    }

    /// A segment has a path parameter (`;` or `%3B`).
    pub fn has_parameters(&self) -> bool {
        self.parameters
    }

    /// The path as an upstream that strips path parameters (Tomcat, Jetty, Spring) sees it:
    /// each segment cut at its first `;` or `%3B`.
    pub fn without_parameters(&self) -> Cow<'_, str> {
        if !self.parameters {
            return Cow::Borrowed(&self.path);
        }
        let mut out = String::with_capacity(self.path.len());
        for (i, seg) in self.path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(split_parameters(seg).0);
        }
        Cow::Owned(out)
    }

    /// What a case-insensitive (Windows) upstream must not be sent: an encoded letter whose
    /// Unicode case mapping is ASCII (`ı` → `I`, `ſ` → `S`, `K` (Kelvin) → `k`, `İ` → `i`), or a
    /// segment ending in a dot or a space (Windows drops them: `admin.` is `admin`).
    pub fn check_case_insensitive(&self) -> Result<(), PathError> {
        let trimmed = |seg: &str| {
            let name = split_parameters(seg).0;
            name.ends_with('.') || name.ends_with("%20")
        };
        if self.folds_to_ascii || self.path.split('/').any(trimmed) {
            return Err(PathError::CaseFolding);
        }
        Ok(())
    }
}

/// `seg` cut at its first path parameter: (name, whether there was one).
fn split_parameters(seg: &str) -> (&str, bool) {
    let at = seg.find(';').into_iter().chain(seg.find("%3B")).min();
    match at {
        Some(i) => (&seg[..i], true),
        None => (seg, false),
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Letters outside ASCII whose simple upper or lower case is ASCII.
fn folds_to_ascii(c: char) -> bool {
    matches!(c, '\u{130}' | '\u{131}' | '\u{17F}' | '\u{212A}')
}

/// Checks that the bytes of consecutive escapes form UTF-8 characters.
#[derive(Default)]
struct Utf8 {
    buf: [u8; 4],
    have: usize,
    need: usize,
    folds: bool,
}

impl Utf8 {
    /// A byte that is not part of a multi-byte character: none may be pending.
    fn single(&self) -> Result<(), PathError> {
        if self.need == 0 {
            Ok(())
        } else {
            Err(PathError::InvalidUtf8)
        }
    }

    fn push(&mut self, b: u8) -> Result<(), PathError> {
        if self.need == 0 {
            self.need = match b {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return Err(PathError::InvalidUtf8),
            };
            self.have = 0;
        }
        self.buf[self.have] = b;
        self.have += 1;
        if self.have == self.need {
            let s =
                std::str::from_utf8(&self.buf[..self.need]).map_err(|_| PathError::InvalidUtf8)?;
            self.folds |= s.chars().any(folds_to_ascii);
            self.need = 0;
        }
        Ok(())
    }
}

/// Checks one segment of the canonical path: no double-encoded escape; an empty name only in the
/// last segment (a trailing `/`, or `/;jsessionid=…`); a name of only dots and spaces is a dot
/// segment.
fn check_segment(seg: &str, last: bool, parameters: &mut bool) -> Result<(), PathError> {
    // Checked on the canonical text: decoding `%25%32%65` also makes `%252e`.
    let double = seg.match_indices("%25").any(|(i, _)| {
        let b = seg.as_bytes();
        b.len() > i + 4 && hex(b[i + 3]).is_some() && hex(b[i + 4]).is_some()
    });
    if double {
        return Err(PathError::BadEscape);
    }
    let (mut name, params) = split_parameters(seg);
    *parameters |= params;
    if name.is_empty() {
        return if last {
            Ok(())
        } else {
            Err(PathError::EmptySegment)
        };
    }
    loop {
        if let Some(n) = name.strip_suffix('.') {
            name = n;
        } else if let Some(n) = name.strip_suffix("%20") {
            name = n;
        } else {
            break;
        }
    }
    if name.is_empty() {
        return Err(PathError::DotSegment);
    }
    Ok(())
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The canonical form of an absolute request path (without its query), or why it is refused.
pub fn canonical(path: &str) -> Result<Canonical<'_>, PathError> {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Built only once the path has to change; until then the canonical text is `path[..i]`.
    let mut out: Option<String> = None;
    let mut parameters = false;
    let mut utf8 = Utf8::default();
    let mut seg = 1;
    let mut i = 1;
    loop {
        match b.get(i).copied() {
            end @ (None | Some(b'/')) => {
                utf8.single()?;
                let text = out.as_deref().unwrap_or(&path[..i]);
                check_segment(&text[seg..], end.is_none(), &mut parameters)?;
                if end.is_none() {
                    break;
                }
                if let Some(o) = out.as_mut() {
                    o.push('/');
                }
                seg = out.as_ref().map_or(i + 1, String::len);
                i += 1;
            }
            Some(b'%') => {
                let (h, l) = match (b.get(i + 1), b.get(i + 2)) {
                    (Some(&h), Some(&l)) => (h, l),
                    _ => return Err(PathError::BadEscape),
                };
                let v = match (hex(h), hex(l)) {
                    (Some(h), Some(l)) => h << 4 | l,
                    _ => return Err(PathError::BadEscape),
                };
                escape(path, i, v, &mut out, &mut utf8)?;
                i += 3;
            }
            Some(c) => {
                match c {
                    b'\\' => return Err(PathError::Backslash),
                    c if !c.is_ascii_graphic() => return Err(PathError::InvalidCharacter),
                    _ => {}
                }
                utf8.single()?;
                if let Some(o) = out.as_mut() {
                    o.push(char::from(c));
                }
                i += 1;
            }
        }
    }
    Ok(Canonical {
        path: out.map_or(Cow::Borrowed(path), Cow::Owned),
        parameters,
        folds_to_ascii: utf8.folds,
    })
}

/// The escape at `path[i..i + 3]`, of the byte `v`: decoded if unreserved, refused if it encodes
/// a separator or a control character, else kept with upper-case hex digits.
fn escape(
    path: &str,
    i: usize,
    v: u8,
    out: &mut Option<String>,
    utf8: &mut Utf8,
) -> Result<(), PathError> {
    let b = path.as_bytes();
    if unreserved(v) {
        utf8.single()?;
        out.get_or_insert_with(|| path[..i].to_owned())
            .push(char::from(v));
        return Ok(());
    }
    match v {
        b'/' | b'\\' => return Err(PathError::EncodedSeparator),
        0..=0x1F | 0x7F => return Err(PathError::InvalidCharacter),
        0x80.. => utf8.push(v)?,
        _ => utf8.single()?,
    }
    let upper = |c: u8| !c.is_ascii_lowercase();
    if upper(b[i + 1]) && upper(b[i + 2]) {
        if let Some(o) = out.as_mut() {
            o.push_str(&path[i..i + 3]);
        }
    } else {
        let o = out.get_or_insert_with(|| path[..i].to_owned());
        o.push('%');
        o.push(char::from(HEX_UPPER[usize::from(v >> 4)]));
        o.push(char::from(HEX_UPPER[usize::from(v & 15)]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> String {
        canonical(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .as_str()
            .to_owned()
    }

    fn err(p: &str) -> PathError {
        canonical(p).expect_err(p)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in [
            "/",
            "/v1/invoices",
            "/v1/invoices/",
            "/v1/a.b/c..d/.well-known/~x",
            "/v1/%20x/%C3%A9t%C3%A9",
            "/a/b;c=d",
            "/a:b@c!$&'()*+,=",
            "/files/%3F%23%25",
        ] {
            let c = canonical(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(matches!(c.clone().into_cow(), Cow::Borrowed(_)), "{p}");
            assert_eq!(c.as_str(), p);
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_hex_is_upper_case() {
        assert_eq!(ok("/%61dmin/x"), "/admin/x");
        assert_eq!(ok("/%41%2D%5f%7E%30"), "/A-_~0");
        assert_eq!(ok("/a%3f/%c3%a9"), "/a%3F/%C3%A9");
        assert_eq!(ok("/a%20b/%2e%2e%2ex"), "/a%20b/...x");
        assert_eq!(ok("/x/a%3bb/y"), "/x/a%3Bb/y");
    }

    #[test]
    fn dot_segments_in_every_disguise_are_refused() {
        for p in [
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/a/%2e/b",
            "/a/%2E%2e/b",
            "/a/.%2E/b",
            "/status/..;/admin",
            "/a/.;x/b",
            "/a/..;x=1",
            "/a/%2e%2e%3Bx/b",
            "/a/.../b",
            "/a/..%20/b",
            "/a/%20/b",
        ] {
            assert_eq!(err(p), PathError::DotSegment, "{p}");
        }
    }

    #[test]
    fn other_disguises_are_refused() {
        let cases = [
            ("", PathError::NotAbsolute),
            ("a/b", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("//admin", PathError::EmptySegment),
            ("/a//b", PathError::EmptySegment),
            ("/a/;x/b", PathError::EmptySegment),
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::Backslash),
            ("/a%00", PathError::InvalidCharacter),
            ("/a%01", PathError::InvalidCharacter),
            ("/a%1f", PathError::InvalidCharacter),
            ("/a%7F", PathError::InvalidCharacter),
            ("/a b", PathError::InvalidCharacter),
            ("/a\tb", PathError::InvalidCharacter),
            ("/é", PathError::InvalidCharacter),
            ("/a%", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/a%252e%252e/b", PathError::BadEscape),
            ("/a%25%32%65", PathError::BadEscape),
            ("/a%25%41%61", PathError::BadEscape),
            ("/a%ff", PathError::InvalidUtf8),
            ("/a%C3", PathError::InvalidUtf8),
            ("/a%C3/b", PathError::InvalidUtf8),
            ("/a%C3a", PathError::InvalidUtf8),
            ("/a%C0%AF", PathError::InvalidUtf8),
            ("/a%ED%A0%80", PathError::InvalidUtf8),
        ];
        for (p, want) in cases {
            assert_eq!(err(p), want, "{p:?}");
        }
    }

    #[test]
    fn parameters_are_reported_and_strippable() {
        let c = canonical("/a;v=1/b%3bx/c;").expect("valid");
        assert!(c.has_parameters());
        assert_eq!(c.without_parameters(), "/a/b/c");
        let c = canonical("/a/;jsessionid=1").expect("a trailing parameter-only segment");
        assert_eq!(c.without_parameters(), "/a/");
        let c = canonical("/a/b").expect("valid");
        assert!(!c.has_parameters());
        assert!(matches!(c.without_parameters(), Cow::Borrowed(_)));
    }

    #[test]
    fn case_insensitive_upstreams_get_no_folding_letters_or_trailing_dots() {
        for p in [
            "/adm%C4%B1n",
            "/%C5%BFtatus",
            "/%E2%84%AAey",
            "/%C4%B0d",
            "/admin./x",
            "/admin%20/x",
            "/admin.;x/y",
        ] {
            let c = canonical(p).expect(p);
            assert_eq!(
                c.check_case_insensitive(),
                Err(PathError::CaseFolding),
                "{p}"
            );
        }
        for p in ["/admin/x", "/caf%C3%A9/", "/a.b/c"] {
            assert_eq!(
                canonical(p).expect(p).check_case_insensitive(),
                Ok(()),
                "{p}"
            );
        }
    }
}
