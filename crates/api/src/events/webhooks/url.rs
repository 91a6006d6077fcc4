//! Endpoint URLs as the API accepts them: absolute, `https://` (or `http://` where allowed), no
//! credentials or fragment, and — unless `danger_allow_private_webhook_targets` — a host that is
//! neither a non-public address nor an internal name
//! ([`portcullis_core::outbound::check_host`]). The delivery checks again, with every address a
//! name resolves to ([`super::guard`]).
use std::net::IpAddr;

use axum::http::Uri;
use portcullis_core::outbound;

use crate::error::ApiError;

/// The longest endpoint URL.
pub const MAX_URL_LEN: usize = 2_048;

fn loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What an endpoint URL may be ([`check_url`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlRules {
    /// `danger_allow_http`.
    pub allow_http: bool,
    /// `danger_allow_private_webhook_targets`.
    pub allow_private: bool,
}

impl From<&super::WebhooksConfig> for UrlRules {
    fn from(c: &super::WebhooksConfig) -> Self {
        Self {
            allow_http: c.danger_allow_http,
            allow_private: c.danger_allow_private_webhook_targets,
        }
    }
}

/// Checks an endpoint URL: absolute `https://` (or `http://` to loopback, or anywhere with
/// `danger_allow_http`), a host, no credentials, no fragment, at most [`MAX_URL_LEN`]; and,
/// unless private targets are allowed, a host that is neither a non-public address literal
/// nor an internal name (400 `webhook_url_not_allowed`; a name is checked again, with every
/// address it resolves to, at each delivery).
pub fn check_url(url: &str, rules: UrlRules) -> Result<(), ApiError> {
    let invalid = |m: &'static str| ApiError::bad_request("invalid_webhook_url", m);
    if url.is_empty() || url.len() > MAX_URL_LEN {
        return Err(invalid("url must be 1 to 2048 characters"));
    }
    if url
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'#')
    {
        return Err(invalid("url has spaces, control characters or a fragment"));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| invalid("url is not an absolute URL"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(invalid("url is not an absolute URL"));
    };
    if authority.as_str().contains('@') {
        return Err(invalid("url must not hold credentials"));
    }
    if authority.host().is_empty() {
        return Err(invalid("url has no host"));
    }
    if !rules.allow_private && outbound::check_host(authority.host()).is_err() {
        return Err(ApiError::bad_request(
            "webhook_url_not_allowed",
            "url must reach a public address: loopback, private, link-local and other \
             internal addresses and names are refused",
        ));
    }
    match scheme {
        "https" => Ok(()),
        "http" if rules.allow_http || loopback(authority.host()) => Ok(()),
        "http" => Err(invalid(
            "url must be https (http is accepted for loopback hosts only)",
        )),
        _ => Err(invalid("url must be https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let code = |u: &str, allow_http| {
            let rules = UrlRules {
                allow_http,
                allow_private: true,
            };
            check_url(u, rules).err().map(|e| e.code)
        };
        assert_eq!(code("https://hooks.example.com/p?x=1", false), None);
        assert_eq!(code("http://127.0.0.1:8080/hook", false), None);
        assert_eq!(code("http://[::1]:8080/hook", false), None);
        assert_eq!(code("http://localhost/hook", false), None);
        assert_eq!(code("http://hooks.example.com/", true), None);
        for bad in [
            "",
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "hooks.example.com/path",
            "/relative",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#frag",
            "https://hooks.example.com/a b",
            "https://hooks.example.com/\n",
        ] {
            assert_eq!(code(bad, false), Some("invalid_webhook_url"), "{bad:?}");
        }
        let long = format!("https://h.example/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(code(&long, false), Some("invalid_webhook_url"));
    }

    #[test]
    fn internal_targets_are_refused_unless_allowed() {
        let code = |u: &str| check_url(u, UrlRules::default()).err().map(|e| e.code);
        for bad in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:8080/hook",
            "https://10.0.0.5/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[fd00::1]/hook",
            "https://[::ffff:192.168.1.1]/hook",
            "https://[64:ff9b::a9fe:a9fe]/hook",
            "https://2130706433/hook",
            "https://metadata.google.internal/computeMetadata/v1/",
            "https://intranet/hook",
        ] {
            assert_eq!(code(bad), Some("webhook_url_not_allowed"), "{bad}");
        }
        assert_eq!(code("https://hooks.example.com/p"), None);
        assert_eq!(code("https://93.184.216.34/p"), None);
        // Plaintext to a public host stays a separate refusal.
        assert_eq!(
            code("http://hooks.example.com/p"),
            Some("invalid_webhook_url")
        );
    }
}
