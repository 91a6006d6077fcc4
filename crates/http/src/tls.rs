//! TLS on the listeners: rustls with `ring` (the workspace's one crypto provider), TLS 1.2 and
//! 1.3 only, the provider's AEAD suites only (AES-GCM, ChaCha20-Poly1305; forward secrecy on
//! every one), ALPN `http/1.1`, optional client certificates.
//!
//! The certificate chain, key and client CAs are read from PEM files. [`TlsServer::reload`]
//! reads them again: a pair that loads replaces the served one for new handshakes (open
//! connections keep theirs); one that does not load is refused with an `error` line and the
//! old pair keeps serving. [`TlsServer::spawn_watcher`] reloads on SIGHUP and when the files
//! change.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio_rustls::TlsAcceptor;

pub use portcullis_service::config::TlsConfig;

/// Why a certificate, key or CA file was refused. The messages name the file and the problem,
/// never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("tls: cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("tls: {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("tls: {path} holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)")]
    NoKey { path: PathBuf },
    #[error("tls: client_ca_file {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    /// rustls refused the pair, e.g. the key does not belong to the certificate.
    #[error("tls: {cert} with {key}: {reason}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The crypto provider of every TLS connection portcullis makes or accepts.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2: nothing older is offered or accepted.
pub static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |e: rustls::pki_types::pem::Error| TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => TlsError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}

fn client_verifier(
    path: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let fail = |reason: String| TlsError::ClientCa {
        path: path.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| fail(e.to_string()))
}

/// Reads the files of `cfg` into a server configuration.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = certificates(&cfg.cert_file)?;
    let key = private_key(&cfg.key_file)?;
    let pair = |e: rustls::Error| TlsError::Pair {
        cert: cfg.cert_file.clone(),
        key: cfg.key_file.clone(),
        reason: e.to_string(),
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(pair)?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(pair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the files looked like when last read: a change of any of them triggers a reload.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(cfg: &TlsConfig) -> Stamp {
    [
        Some(&cfg.cert_file),
        Some(&cfg.key_file),
        cfg.client_ca_file.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    })
    .collect()
}

/// One listener's TLS: its configuration and the pair it serves now.
pub struct TlsServer {
    config: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("cert_file", &self.config.cert_file)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Reads the files of `config`; an error stops the start.
    pub fn load(config: TlsConfig) -> Result<Self, TlsError> {
        let seen = stamp(&config);
        let current = server_config(&config)?;
        Ok(Self {
            config,
            current: RwLock::new(current),
            seen: Mutex::new(seen),
        })
    }

    /// The TLS of a listener whose configuration section is `cfg`: `None` (plaintext) when the
    /// section is absent.
    pub fn load_section(cfg: Option<&TlsConfig>) -> Result<Option<Arc<Self>>, TlsError> {
        cfg.map(|c| Self::load(c.clone()).map(Arc::new)).transpose()
    }

    pub fn config(&self) -> &TlsConfig {
        &self.config
    }

    /// The acceptor of the next handshake, with the pair served now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        TlsAcceptor::from(current.clone())
    }

    /// Reads the files again. On success new handshakes use the new pair; on failure the old
    /// pair keeps serving and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let seen = stamp(&self.config);
        let next = server_config(&self.config);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        let next = next?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Reloads if a file changed since it was last read; `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = stamp(&self.config);
        if *self.seen.lock().unwrap_or_else(|p| p.into_inner()) == now {
            return None;
        }
        Some(self.reload())
    }

    /// Reloads on SIGHUP and when the files change (checked every `reload_check_seconds`),
    /// logging the outcome under the listener's `name`.
    pub fn spawn_watcher(self: &Arc<Self>, name: &'static str) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        let every = Duration::from_secs(tls.config.reload_check_seconds.max(1));
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                let outcome = tokio::select! {
                    _ = hangup => Some(tls.reload()),
                    () = tokio::time::sleep(every) => tls.reload_if_changed(),
                };
                match outcome {
                    None => {}
                    Some(Ok(())) => {
                        tracing::info!(listener = name, cert_file = %tls.config.cert_file.display(), "tls: certificate reloaded")
                    }
                    Some(Err(e)) => {
                        tracing::error!(listener = name, error = %e, "tls: new certificate refused; the previous one keeps serving")
                    }
                }
            }
        })
    }
}
