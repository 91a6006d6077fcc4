//! `[tls]` (the admin / verify API listener) and `[gateway.tls]` (the gateway listener): serve
//! the listener over TLS 1.2 and 1.3 (see `docs/tls.md`).
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// A listener's certificate, key and options. The files are re-read on SIGHUP and when they
/// change; a new pair that does not load is refused and the old one keeps serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM: the certificate chain, the server's certificate first.
    pub cert_file: PathBuf,
    /// PEM: the private key of the first certificate (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// PEM: certificate authorities whose client certificates are required (mutual TLS).
    /// Absent: clients present no certificate.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `Strict-Transport-Security: max-age=…` on every answer of the listener; 0 sends none.
    #[serde(default = "default_hsts_max_age_seconds")]
    pub hsts_max_age_seconds: u64,
    /// How often the files are checked for a change.
    #[serde(default = "default_reload_check_seconds")]
    pub reload_check_seconds: u64,
}

fn default_hsts_max_age_seconds() -> u64 {
    // Two years, the preload list's figure.
    63_072_000
}

fn default_reload_check_seconds() -> u64 {
    10
}

impl TlsConfig {
    /// A configuration with these files and the default options.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: None,
            hsts_max_age_seconds: default_hsts_max_age_seconds(),
            reload_check_seconds: default_reload_check_seconds(),
        }
    }

    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.reload_check_seconds) {
            return Err(ConfigError::OutOfRange(format!(
                "{section}.reload_check_seconds must be between 1 and 3600"
            )));
        }
        if self.hsts_max_age_seconds > 10 * 365 * 86_400 {
            return Err(ConfigError::OutOfRange(format!(
                "{section}.hsts_max_age_seconds must be at most ten years"
            )));
        }
        Ok(())
    }
}
