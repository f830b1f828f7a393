//! An echo upstream that reports what it received: method, path, version, every header (in
//! order, repeated ones included) and the body's length and SHA-256. Served on TCP, TLS (with
//! a required client certificate) or a Unix socket.
//!
//! Routes: `/slow/<ms>` answers after a delay, `/bytes/<n>` streams n bytes back,
//! anything else reads the whole body (hashing as it streams) and answers JSON.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

type EchoBody = BoxBody<Bytes, Infallible>;

/// What the echo upstream saw, as it reports it.
#[derive(Debug, Deserialize)]
pub struct Echoed {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sha256: String,
}

impl Echoed {
    /// Every value of a header (name compared case-insensitively, exact spelling).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "header {name} repeated: {all:?}");
        all.first().copied()
    }
}

/// A running echo upstream.
pub struct Echo {
    pub requests: Arc<AtomicUsize>,
    pub url: String,
    pub addr: Option<SocketAddr>,
    pub socket: Option<PathBuf>,
    task: tokio::task::JoinHandle<()>,
    _alive: watch::Sender<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(body: impl Into<Bytes>) -> EchoBody {
    Full::new(body.into()).boxed()
}

async fn respond(request: Request<Incoming>, counter: Arc<AtomicUsize>) -> Response<EchoBody> {
    counter.fetch_add(1, Ordering::SeqCst);
    let path = request.uri().path().to_owned();
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = (0..n.div_ceil(chunk.len())).map(move |i| {
            let len = chunk.len().min(n - i * chunk.len());
            Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
        });
        return Response::new(StreamBody::new(stream::iter(chunks)).boxed());
    }
    let method = request.method().to_string();
    let version = format!("{:?}", request.version());
    let full_path = request
        .uri()
        .path_and_query()
        .map_or("/".into(), |p| p.to_string());
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = request.into_body();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    len += data.len() as u64;
                    hasher.update(data);
                }
            }
            Err(_) => break,
        }
    }
    let report = serde_json::json!({
        "method": method, "path": full_path, "version": version, "headers": headers,
        "body_len": len, "body_sha256": hex(&hasher.finalize()),
    });
    let mut response = Response::new(full(report.to_string()));
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert("connection", http::HeaderValue::from_static("keep-alive"));
    response
        .headers_mut()
        .insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
    response
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves one connection until it ends or the owning [`Echo`] is dropped (then the
/// connection is closed, as when a real upstream dies).
fn serve_io<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: I,
    counter: Arc<AtomicUsize>,
    mut alive: watch::Receiver<()>,
) {
    tokio::spawn(async move {
        let service = service_fn(move |r| {
            let c = counter.clone();
            async move { Ok::<_, Infallible>(respond(r, c).await) }
        });
        let builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::select! {
            _ = connection => {}
            _ = alive.changed() => {}
        }
    });
}

impl Echo {
    /// Plain HTTP on 127.0.0.1, a free port.
    pub async fn tcp() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let (alive, watching) = watch::channel(());
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                serve_io(s, counter.clone(), watching.clone());
            }
        });
        Ok(Self {
            requests,
            url: format!("http://{addr}"),
            addr: Some(addr),
            socket: None,
            task,
            _alive: alive,
        })
    }

    /// HTTP on a Unix socket at `path`.
    pub async fn unix(path: PathBuf) -> Result<Self> {
        let listener = UnixListener::bind(&path)?;
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let (alive, watching) = watch::channel(());
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                serve_io(s, counter.clone(), watching.clone());
            }
        });
        Ok(Self {
            requests,
            url: format!("unix:{}", path.display()),
            addr: None,
            socket: Some(path),
            task,
            _alive: alive,
        })
    }

    /// HTTPS on 127.0.0.1 requiring a client certificate from `client_ca`.
    pub async fn tls(server: &crate::pki::CertFiles, client_ca: &std::path::Path) -> Result<Self> {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(&server.cert)?
            .collect::<Result<_, _>>()?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&server.key)?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pki_types::CertificateDer::pem_file_iter(client_ca)? {
            roots.add(ca?)?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let (alive, watching) = watch::channel(());
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counter = counter.clone();
                let watching = watching.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        serve_io(tls, counter, watching);
                    }
                });
            }
        });
        Ok(Self {
            requests,
            url: format!("https://localhost:{}", addr.port()),
            addr: Some(addr),
            socket: None,
            task,
            _alive: alive,
        })
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
