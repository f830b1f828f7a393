//! TLS towards the KMS: the system's roots by default, one pinned certificate
//! (`verified_cert`), or anything (`accept_invalid_certs`, development only); a PKCS#12 client
//! identity when configured. aws-lc-rs is the one crypto provider.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::config::HttpConfig;
use crate::error::CliError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts exactly one certificate (byte for byte), whatever its issuer; signatures are still
/// checked, so the peer must hold that certificate's key.
#[derive(Debug)]
struct Pinned {
    der: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

/// Accepts any certificate (accept_invalid_certs); signatures are still checked.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

macro_rules! signatures_with_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            // The one error kind only this verifier produces: the CLI reports a pin mismatch.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    signatures_with_provider!();
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signatures_with_provider!();
}

/// The client certificate and key of a PKCS#12 file.
fn pkcs12_identity(
    http: &HttpConfig,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, CliError> {
    let Some(path) = &http.ssl_client_pkcs12_path else {
        return Ok(None);
    };
    let data = std::fs::read(path).map_err(|e| {
        CliError::Config(format!(
            "ssl_client_pkcs12_path: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let password = http
        .ssl_client_pkcs12_password
        .as_ref()
        .map_or("", |p| p.0.as_str());
    let bad = |reason: String| {
        CliError::Config(format!(
            "ssl_client_pkcs12_path {}: {reason} (check ssl_client_pkcs12_password)",
            path.display()
        ))
    };
    let store = p12_keystore::KeyStore::from_pkcs12(
        &data,
        password,
        p12_keystore::Pkcs12ImportPolicy::Relaxed,
    )
    .map_err(|e| bad(e.to_string()))?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| bad("no private key in the file".into()))?;
    let certs: Vec<CertificateDer<'static>> = chain
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err(bad("no certificate for the private key".into()));
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec()));
    Ok(Some((certs, key)))
}

/// The rustls configuration for one run of the CLI.
pub fn client_config(http: &HttpConfig) -> Result<rustls::ClientConfig, CliError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| CliError::Config(format!("TLS: {e}")))?;
    let builder = if let Some(pem) = &http.verified_cert {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| CliError::Config(format!("verified_cert: not a PEM certificate: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                der: der.as_ref().to_vec(),
                provider,
            }))
    } else if http.accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match pkcs12_identity(http)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| CliError::Config(format!("ssl_client_pkcs12_path: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A certificate problem in words (never Rust debug text).
fn certificate_problem(reason: &CertificateError) -> String {
    match reason {
        CertificateError::UnknownIssuer => "it is not signed by a CA this client trusts".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("it has expired: {reason}")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("it is not valid yet: {reason}")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("it does not name this host: {reason}")
        }
        CertificateError::Revoked => "it has been revoked".into(),
        other => other.to_string(),
    }
}

pub use kms_common::error::chain as error_text;

/// What a failed request's TLS error means for the user, when it was a TLS error.
pub fn classify(error: &(dyn std::error::Error + 'static), url: &str) -> Option<CliError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        // io::Error::source() skips the error it wraps: look inside it explicitly.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        let tls = e
            .downcast_ref::<rustls::Error>()
            .or_else(|| inner.and_then(|i| i.downcast_ref::<rustls::Error>()));
        if let Some(tls) = tls {
            return Some(match tls {
                rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ) => CliError::PinMismatch { url: url.into() },
                rustls::Error::AlertReceived(
                    rustls::AlertDescription::CertificateRequired
                    | rustls::AlertDescription::BadCertificate
                    | rustls::AlertDescription::UnknownCA
                    | rustls::AlertDescription::CertificateExpired
                    | rustls::AlertDescription::CertificateRevoked,
                ) => CliError::Unauthenticated {
                    reason: format!("the KMS refused the TLS handshake ({tls})"),
                    hint: "It requires a client certificate it trusts: set ssl_client_pkcs12_path and ssl_client_pkcs12_password in [http_config]".into(),
                },
                rustls::Error::InvalidCertificate(reason) => CliError::Untrusted {
                    url: url.into(),
                    reason: certificate_problem(reason),
                },
                other => CliError::Unreachable {
                    url: url.into(),
                    reason: format!("TLS: {other}"),
                },
            });
        }
        current = inner.or_else(|| e.source());
    }
    None
}
