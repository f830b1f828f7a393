//! Test harness for end-to-end tests: generated PKI, echo upstreams, real proxy processes.

pub mod ckms;
pub mod client;
pub mod echo;
pub mod idp;
pub mod pki;
pub mod postgres;
pub mod proxy;
pub mod softhsm;
pub mod stack;

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

/// Runs openssl (the independent implementation tests check results with) and returns its
/// standard output.
pub fn openssl(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .context("openssl (apt-get install openssl)")?;
    if !out.status.success() {
        anyhow::bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
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

/// Checks Prometheus text with `promtool check metrics` (Debian package `prometheus`).
pub fn promtool_check(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("promtool not found ({e}): install it with `apt-get install -y prometheus` (bash tests/run.sh does)"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A random number for test serials and names (from the OS, via a fresh key's public part).
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// The load generators' one-line result: `req/s=… p50=…ms p99=…ms n=…`.
pub fn load_report(mut latencies: Vec<std::time::Duration>, elapsed_secs: f64) -> String {
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    format!(
        "req/s={:.0} p50={:.2}ms p99={:.2}ms n={}",
        latencies.len() as f64 / elapsed_secs,
        pct(0.50),
        pct(0.99),
        latencies.len()
    )
}
