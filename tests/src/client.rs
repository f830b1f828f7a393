//! Clients for the tests: reqwest trusting the test CA, and raw TLS streams for byte-level tests.

use std::sync::Arc;

use anyhow::Result;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Installs the one crypto provider of the workspace (aws-lc-rs) for this test process.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A reqwest client that trusts `ca_pem` only.
pub fn https(ca_pem: &str) -> Result<reqwest::Client> {
    init_crypto();
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
        .timeout(std::time::Duration::from_secs(60))
        .build()?)
}

/// A reqwest client that trusts `ca_pem` only and presents `identity` (certificate + key).
pub fn https_with_identity(
    ca_pem: &str,
    identity: Option<&crate::CertFiles>,
) -> Result<reqwest::Client> {
    init_crypto();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
        .timeout(std::time::Duration::from_secs(20));
    if let Some(id) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(id.identity_pem().as_bytes())?);
    }
    Ok(builder.build()?)
}

/// A rustls client config trusting `ca_pem`, with the given protocol versions and ALPN.
pub fn tls_config(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Opens a TLS connection to `port` on 127.0.0.1 for server name localhost.
pub async fn tls_connect(
    config: Arc<rustls::ClientConfig>,
    port: u16,
) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    Ok(connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?)
}

/// Sends raw bytes over a fresh TLS 1.3 / HTTP/1.1 connection and returns everything read
/// until the server closes (an unclean close ends the read too).
pub async fn raw_http1(ca_pem: &str, port: u16, request: &[u8]) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = tls_config(ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let mut stream = tls_connect(config, port).await?;
    // The server may answer and close before reading everything (an oversized request):
    // what it sent is still read below.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Splits a raw HTTP/1.1 response into head and body.
pub fn split_response(raw: &str) -> (&str, &str) {
    raw.split_once("\r\n\r\n").unwrap_or((raw, ""))
}
