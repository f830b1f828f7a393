//! Load generator for the authentication benchmark (tests/bench/auth.sh): GET / over TLS 1.3
//! keep-alive from N connections, with a client certificate, one repeated bearer token, or a
//! file of distinct tokens used in turn; prints requests/s and p50/p99 latency. `sign` writes
//! distinct RS256 tokens for the last case.
//!
//! usage: auth-load run  <https://127.0.0.1:port> <ca.pem> <connections> <seconds>
//!                       [--identity cert+key.pem] [--bearer TOKEN] [--tokens FILE]
//!        auth-load sign <rsa-key.pem> <issuer> <audience> <count> <out-file>

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

enum Credential {
    None,
    Bearer(String),
    Tokens(Vec<String>, AtomicUsize),
}

impl Credential {
    fn header(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Bearer(t) => Some(format!("Bearer {t}")),
            Self::Tokens(list, next) => {
                let i = next.fetch_add(1, Ordering::Relaxed) % list.len();
                Some(format!("Bearer {}", list[i]))
            }
        }
    }
}

fn tls_config(ca: &[u8], identity: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_slice(pem)?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn worker(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    credential: Arc<Credential>,
    until: Instant,
) -> Result<Vec<Duration>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let mut request = http::Request::get("/").header("host", "localhost");
        if let Some(value) = credential.header() {
            request = request.header("authorization", value);
        }
        let request = request.body(Empty::<Bytes>::new())?;
        let started = Instant::now();
        let response = sender.send_request(request).await?;
        let status = response.status();
        let _ = response.into_body().collect().await?;
        if !status.is_success() {
            bail!("status {status}");
        }
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

async fn run(args: &[String]) -> Result<()> {
    let [url, ca, connections, seconds, rest @ ..] = args else {
        bail!(
            "usage: auth-load run <https://127.0.0.1:port> <ca.pem> <connections> <seconds> [options]"
        );
    };
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .context("the URL needs a port")?;
    let mut identity = None;
    let mut credential = Credential::None;
    let mut options = rest.iter();
    while let Some(option) = options.next() {
        let value = options.next().context("option without a value")?;
        match option.as_str() {
            "--identity" => identity = Some(std::fs::read(value)?),
            "--bearer" => credential = Credential::Bearer(value.clone()),
            "--tokens" => {
                let list: Vec<String> = std::fs::read_to_string(value)?
                    .lines()
                    .map(str::to_owned)
                    .collect();
                anyhow::ensure!(!list.is_empty(), "no token in {value}");
                credential = Credential::Tokens(list, AtomicUsize::new(0));
            }
            other => bail!("unknown option {other}"),
        }
    }
    let config = tls_config(&std::fs::read(ca)?, identity.as_deref())?;
    let credential = Arc::new(credential);
    let until = Instant::now() + Duration::from_secs_f64(seconds.parse()?);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections.parse::<usize>()?)
        .map(|_| tokio::spawn(worker(config.clone(), port, credential.clone(), until)))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    println!(
        "{}",
        kms_tests::load_report(all, started.elapsed().as_secs_f64())
    );
    Ok(())
}

fn sign(args: &[String]) -> Result<()> {
    let [key, issuer, audience, count, out] = args else {
        bail!("usage: auth-load sign <rsa-key.pem> <issuer> <audience> <count> <out-file>");
    };
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(key)?)?;
    let count: usize = count.parse()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunks: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let key = &key;
                scope.spawn(move || {
                    (t..count)
                        .step_by(threads)
                        .map(|i| {
                            let claims = serde_json::json!({
                                "iss": issuer, "aud": audience, "sub": format!("user-{i}"),
                                "email": format!("user-{i}@example.com"), "jti": i,
                                "iat": now, "exp": now + 3600,
                            });
                            let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                            jsonwebtoken::encode(&header, &claims, key).map_err(anyhow::Error::from)
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("signer panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    let mut text = chunks.concat().join("\n");
    text.push('\n');
    std::fs::write(out, text)?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]).await,
        Some("sign") => sign(&args[1..]),
        _ => bail!("usage: auth-load run ... | auth-load sign ... (see the source header)"),
    }
}
