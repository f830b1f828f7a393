//! Test harness for end-to-end tests: generated PKI, echo upstreams, real proxy processes.

pub mod client;
pub mod echo;
pub mod pki;
pub mod proxy;

pub use echo::{Echo, Echoed};
pub use pki::{CertFiles, TestPki, Validity};
pub use proxy::{Proxy, ProxyCommand};

/// The standard arguments for a proxy in front of `upstream` with the server cert `cert`.
pub fn tls_args(cert: &CertFiles, upstream: &str) -> Vec<String> {
    vec![
        "--tls-cert-file".into(),
        cert.cert.display().to_string(),
        "--tls-key-file".into(),
        cert.key.display().to_string(),
        "--upstream".into(),
        upstream.into(),
    ]
}
