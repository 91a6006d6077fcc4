//! TLS for the tests: a certificate authority made at test time (rcgen), certificates it
//! issues written as PEM files, and a client over rustls that speaks HTTP/1.1 on one connection.
use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use portcullis_server::config::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A certificate authority and the directory its files go to.
pub struct Pki {
    pub dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

/// A certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("ca certificate");
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or addresses), valid from `not_before` to
    /// `not_after` (years).
    pub fn server(&self, names: &[&str], not_before: i32, not_after: i32) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.not_before = rcgen::date_time_ymd(not_before, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client certificate (mutual TLS) for `name`.
    pub fn client(&self, name: &str) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `text` to a file of the directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// A listener configuration serving `issued`, written as `{name}.pem` / `{name}.key`.
    pub fn config_of(&self, name: &str, issued: &Issued) -> TlsConfig {
        TlsConfig::new(
            self.write(&format!("{name}.pem"), &issued.cert_pem),
            self.write(&format!("{name}.key"), &issued.key_pem),
        )
    }

    /// A usual server pair for 127.0.0.1 and localhost.
    pub fn listener_config(&self) -> TlsConfig {
        self.config_of(
            "cert",
            &self.server(&["localhost", "127.0.0.1"], 2020, 2100),
        )
    }
}

/// How a test client connects.
#[derive(Clone)]
pub struct Client {
    pub roots: Vec<String>,
    /// `None`: both 1.2 and 1.3.
    pub version: Option<&'static rustls::SupportedProtocolVersion>,
    pub identity: Option<(String, String)>,
    pub server_name: &'static str,
}

impl Client {
    pub fn trusting(ca_pem: &str) -> Self {
        Self {
            roots: vec![ca_pem.to_owned()],
            version: None,
            identity: None,
            server_name: "localhost",
        }
    }

    fn config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for pem in &self.roots {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.expect("pem")).expect("root");
            }
        }
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = match self.version {
            Some(v) => vec![v],
            None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&versions)
        .expect("versions")
        .with_root_certificates(roots);
        let mut c = match &self.identity {
            Some((cert, key)) => b
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .expect("client cert"),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key"),
                )
                .expect("client identity"),
            None => b.with_no_client_auth(),
        };
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c
    }

    /// One GET over a new connection: the status, the headers, the body text and the
    /// negotiated protocol version; `Err` with the reason when the handshake or the request
    /// fails.
    pub async fn get(
        &self,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let connector = TlsConnector::from(Arc::new(self.config()));
        let name = ServerName::try_from(self.server_name).expect("server name");
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let version = tls.get_ref().1.protocol_version();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = hyper::Request::get(path).header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = send
            .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            version,
        })
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: hyper::StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: String,
    pub version: Option<rustls::ProtocolVersion>,
}
