//! Small models of how upstream servers resolve the path they receive, for the tests that check
//! that the path the gateway forwards lands, on any of them, in the route that was authorised.
//! Each takes the forwarded path (without query) and returns the path the server acts on.

/// Percent-decodes every escape (a malformed one stays as it is); bytes that are not UTF-8
/// become U+FFFD.
pub fn decode(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| {
            b.get(j)
                .and_then(|c| char::from(*c).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Merges slashes and resolves `.` and `..` (never above the root); keeps a trailing slash.
pub fn resolve_dots(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in p.split('/') {
        trailing = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut r = format!("/{}", out.join("/"));
    if trailing && !out.is_empty() {
        r.push('/');
    }
    r
}

/// Each segment cut at its first `;`.
fn strip_parameters(p: &str) -> String {
    p.split('/')
        .map(|s| s.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// Tomcat / Jetty: path parameters stripped from the raw path, then decoded, slashes merged and
/// dot segments resolved.
pub fn tomcat(p: &str) -> String {
    resolve_dots(&decode(&strip_parameters(p)))
}

/// A framework that decodes first and strips path parameters after (so `%3B` starts one too).
pub fn decode_then_strip(p: &str) -> String {
    resolve_dots(&strip_parameters(&decode(p)))
}

/// nginx (and Python's `http.server`): decoded, slashes merged, dot segments resolved.
pub fn nginx(p: &str) -> String {
    resolve_dots(&decode(p))
}

/// Go's `path.Clean` of the decoded path: as nginx, but without a trailing slash.
pub fn go(p: &str) -> String {
    let r = resolve_dots(&decode(p));
    match r.strip_suffix('/') {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => r,
    }
}

/// IIS / Windows: decoded, `\` is `/`, case-insensitive (Unicode simple case mapping: `ı` is
/// `I`), trailing dots and spaces of a name dropped, then dot segments resolved. Returned in
/// lower case.
pub fn iis(p: &str) -> String {
    let d: String = decode(p)
        .replace('\\', "/")
        .chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect();
    let trimmed = d
        .split('/')
        .map(|s| match s {
            "." | ".." => s,
            s => s.trim_end_matches(['.', ' ']),
        })
        .collect::<Vec<_>>()
        .join("/");
    resolve_dots(&trimmed)
}

/// A model by name: the forwarded path in, the path the server acts on out.
pub type Model = (&'static str, fn(&str) -> String);

/// The case-sensitive models.
pub const CASE_SENSITIVE: [Model; 4] = [
    ("tomcat", tomcat),
    ("decode_then_strip", decode_then_strip),
    ("nginx", nginx),
    ("go", go),
];

/// Every model.
pub const ALL: [Model; 5] = [
    ("tomcat", tomcat),
    ("decode_then_strip", decode_then_strip),
    ("nginx", nginx),
    ("go", go),
    ("iis", iis),
];
