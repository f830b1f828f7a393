//! kms-core on TCP, for when the proxy cannot share a Unix socket: mTLS that accepts only the
//! proxy (a pinned CA and an allowed subject CN), or plain HTTP on loopback only.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error(
        "refusing to listen on {0} without mTLS: give --proxy-ca-cert-file, --proxy-allowed-cn, --tls-cert-file and --tls-key-file, or listen on a loopback address"
    )]
    Unprotected(SocketAddr),
    #[error("mTLS for --listen needs {0}")]
    Missing(&'static str),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

fn file_err(path: &Path, reason: impl ToString) -> TcpError {
    TcpError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TcpError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate"));
    }
    Ok(certs)
}

/// The first subject CN of a certificate, if it is UTF-8.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(cn)
}

/// WebPKI client verification against the pinned CA, then an allowed-CN check.
#[derive(Debug)]
struct ProxyOnly {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for ProxyOnly {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match common_name(end_entity) {
            Some(cn) if self.allowed.contains(&cn) => Ok(verified),
            cn => {
                tracing::warn!(cn = %cn.as_deref().unwrap_or(""), "refused a client certificate whose CN is not an allowed proxy");
                Err(rustls::Error::General(
                    "client certificate CN is not allowed".into(),
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The TLS acceptor for `--listen`, or None for plain HTTP on loopback. Checked before binding.
pub fn acceptor(
    flags: &Config,
    address: SocketAddr,
) -> Result<Option<tokio_rustls::TlsAcceptor>, TcpError> {
    let Some(ca_file) = &flags.proxy_ca_cert_file else {
        if address.ip().is_loopback() {
            tracing::warn!(%address, "kms-core on plain TCP (loopback only): any local process can act as any user");
            return Ok(None);
        }
        return Err(TcpError::Unprotected(address));
    };
    if flags.proxy_allowed_cn.is_empty() {
        return Err(TcpError::Missing("--proxy-allowed-cn"));
    }
    let cert = flags
        .tls_cert_file
        .as_deref()
        .ok_or(TcpError::Missing("--tls-cert-file"))?;
    let key = flags
        .tls_key_file
        .as_deref()
        .ok_or(TcpError::Missing("--tls-key-file"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(ca_file)? {
        roots.add(ca)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TcpError::Verifier(e.to_string()))?;
    let verifier = Arc::new(ProxyOnly {
        inner,
        allowed: flags.proxy_allowed_cn.clone(),
    });
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert)?, key)?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}
