//! TLS: the server certificate (PEM or PKCS#12), its hot reload, and the client side towards
//! an https upstream. One crypto provider (aws-lc-rs) for everything.

pub mod client_trust;

pub use client_trust::ClientTrust;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use tokio::sync::watch;

use crate::config::{ClientCertMode, MtlsConfig, ServerCert, UpstreamTls};
use crate::metrics::Metrics;

/// The provider used by every TLS component of the proxy.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no usable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "{path}: cannot open the PKCS#12 file (wrong password or unsupported format): {reason}"
    )]
    Pkcs12 { path: PathBuf, reason: String },
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("the certificate is not valid now (valid from {not_before} to {not_after})")]
    OutsideValidity {
        not_before: String,
        not_after: String,
    },
    #[error("cannot parse the certificate: {0}")]
    Parse(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server certificate ready to serve, with its expiry (Unix seconds).
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub not_after: i64,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a PEM certificate chain.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = zeroize::Zeroizing::new(read(path)?);
    if data
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
        || data
            .windows(b"Proc-Type: 4,ENCRYPTED".len())
            .any(|w| w == b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(TlsError::BadKey {
            path: path.to_owned(),
            reason: "the key is encrypted with a passphrase, which kms-proxy cannot ask for; \
                     write it unencrypted (mode 0600): openssl pkey -in KEY -out KEY.plain"
                .into(),
        });
    }
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| TlsError::BadKey {
        path: path.to_owned(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PEM private key in the file (PKCS#8 \"PRIVATE KEY\", PKCS#1 \"RSA PRIVATE \
                 KEY\" or SEC1 \"EC PRIVATE KEY\")"
                    .into()
            }
            e => e.to_string(),
        },
    })
}

fn read_pkcs12(
    path: &Path,
    password: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let data = read(path)?;
    let err = |reason: String| TlsError::Pkcs12 {
        path: path.to_owned(),
        reason,
    };
    let store = p12_keystore::KeyStore::from_pkcs12(
        &data,
        password,
        p12_keystore::Pkcs12ImportPolicy::Relaxed,
    )
    .map_err(|e| err(e.to_string()))?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| err("no private key in the file".into()))?;
    let certs: Vec<_> = chain
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err(err("no certificate for the private key".into()));
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec()));
    Ok((certs, key))
}

/// Loads and checks a server certificate: the key must match and the leaf must be valid now.
pub fn load_server_cert(source: &ServerCert) -> Result<LoadedCert, TlsError> {
    let (certs, key) = match source {
        ServerCert::Pem { cert, key } => (read_certs(cert)?, read_key(key)?),
        ServerCert::Pkcs12 { file, password } => read_pkcs12(file, password.expose())?,
    };
    let key_path = match source {
        ServerCert::Pem { key, .. } => key.clone(),
        ServerCert::Pkcs12 { file, .. } => file.clone(),
    };
    let (not_before, not_after) = validity(&certs[0])?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if now < not_before || now > not_after {
        let fmt = |t: i64| {
            x509_parser::time::ASN1Time::from_timestamp(t)
                .map_or_else(|_| t.to_string(), |t| t.to_string())
        };
        return Err(TlsError::OutsideValidity {
            not_before: fmt(not_before),
            not_after: fmt(not_after),
        });
    }
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: key_path,
            reason: e.to_string(),
        })?;
    warn_if_ca(&certs[0]);
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|_| TlsError::KeyMismatch)?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
    })
}

/// A CA certificate served as the server certificate works with some clients and not others
/// (and means the CA's key sits on the server): say so.
fn warn_if_ca(cert: &CertificateDer<'_>) {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return;
    };
    if parsed
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca)
    {
        tracing::warn!(
            subject = %parsed.subject(),
            "the server certificate is a CA certificate (basicConstraints CA:TRUE): serve a \
             leaf certificate issued by that CA for this host instead"
        );
    }
}

fn validity(cert: &CertificateDer<'_>) -> Result<(i64, i64), TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    let v = parsed.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// The server certificate in use; swapped atomically on reload, so open connections keep
/// theirs and new handshakes get the new one.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(loaded: &LoadedCert) -> Self {
        Self {
            current: ArcSwap::new(loaded.key.clone()),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// rustls server configuration: TLS 1.3 and 1.2, ALPN h2 and http/1.1.
pub fn server_config(
    store: Arc<CertStore>,
    trust: Option<Arc<ClientTrust>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match trust {
        Some(trust) => builder.with_client_cert_verifier(trust),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Verifies client certificates against the authority bundle (several CAs allowed) and the
/// optional CRLs; with `optional`, a client without a certificate still completes the handshake.
pub(crate) fn client_verifier(mtls: &MtlsConfig) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&mtls.ca_file)? {
        roots.add(cert)?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    if let Some(path) = &mtls.crl_file {
        let data = read(path)?;
        let crls: Vec<CertificateRevocationListDer<'static>> =
            CertificateRevocationListDer::pem_slice_iter(&data)
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::Parse(format!("{}: {e}", path.display())))?;
        if crls.is_empty() {
            return Err(TlsError::Parse(format!("{}: no CRL found", path.display())));
        }
        builder = builder.with_crls(crls);
    }
    if mtls.mode == ClientCertMode::Optional {
        builder = builder.allow_unauthenticated();
    }
    builder
        .build()
        .map_err(|e| TlsError::Parse(format!("client certificate verifier: {e}")))
}

/// rustls client configuration towards an https upstream: the given CA bundle (or the
/// system's roots) and an optional client certificate.
pub fn upstream_client_config(settings: &UpstreamTls) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots.add(cert)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut config = match &settings.client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn reload_trust(trust: &ClientTrust, trigger: &str, metrics: &Metrics) {
    match trust.reload() {
        Ok(()) => {
            metrics.cert_reloads.with_label_values(&["success"]).inc();
            tracing::info!(trigger, "client CA bundle and CRLs reloaded");
        }
        Err(e) => {
            metrics.cert_reloads.with_label_values(&["failure"]).inc();
            tracing::error!(trigger, error = %e, "client CA reload failed; keeping the current trust");
        }
    }
}

/// What identifies a version of a file: a change of any part means "reload".
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(i64, i64, u64, u64)>> {
    files
        .iter()
        .map(|f| {
            fs::metadata(f)
                .ok()
                .map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
        })
        .collect()
}

/// Reloads the server certificate, and the client CA bundle and CRLs, on SIGHUP and when
/// their files change; a broken new file is logged and the current one kept.
pub async fn watch_reload(
    store: Arc<CertStore>,
    source: ServerCert,
    trust: Option<Arc<ClientTrust>>,
    interval: Duration,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let files = source.files();
    let mut last = fingerprint(&files);
    let trust_files = trust.as_ref().map(|t| t.files()).unwrap_or_default();
    let mut trust_last = fingerprint(&trust_files);
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; file polling only");
            None
        }
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reason = tokio::select! {
            _ = shutdown.changed() => return,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
            _ = ticker.tick() => {
                let trust_now = fingerprint(&trust_files);
                if trust_now != trust_last {
                    trust_last = trust_now;
                    if let Some(trust) = &trust {
                        reload_trust(trust, "file change", &metrics);
                    }
                }
                let now = fingerprint(&files);
                if now == last { continue; }
                last = now;
                "file change"
            }
        };
        if reason == "SIGHUP"
            && let Some(trust) = &trust
        {
            reload_trust(trust, reason, &metrics);
        }
        match load_server_cert(&source) {
            Ok(loaded) => {
                store.current.store(loaded.key.clone());
                metrics.cert_not_after.set(loaded.not_after);
                metrics.cert_reloads.with_label_values(&["success"]).inc();
                tracing::info!(
                    trigger = reason,
                    not_after = loaded.not_after,
                    "server certificate reloaded"
                );
            }
            Err(e) => {
                metrics.cert_reloads.with_label_values(&["failure"]).inc();
                tracing::error!(trigger = reason, error = %e, "server certificate reload failed; keeping the current certificate");
            }
        }
    }
}
