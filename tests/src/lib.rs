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

/// The value of one sample (`name{labels}` exactly as exported) in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Fetches the proxy's /metrics text.
pub async fn scrape(proxy: &Proxy) -> anyhow::Result<String> {
    Ok(reqwest::get(proxy.admin_url("/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?)
}
