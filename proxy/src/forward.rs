//! The pooled client to the upstream (Unix socket, http or https) and the forwarding of one
//! request: bounds, hop-by-hop headers, identity headers, timeouts, streaming both ways.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::body::{FaultCell, GuardedBody, ProxyBody};
use crate::config::{Config, Limits, Upstream};
use crate::error::{ProxyError, UpstreamErrorKind};
use crate::identity::{Identity, IdentityHeaders};
use crate::metrics::Metrics;
use crate::mint::Minter;

/// A connection to the upstream, whatever its transport.
pub enum UpstreamStream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            UpstreamStream::Unix($s) => {
                let $s = Pin::new($s);
                $e
            }
            UpstreamStream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            UpstreamStream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Unix(s) => s.is_write_vectored(),
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Why a connection to the upstream could not be made; its source says what the system or
/// the TLS library reported.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe_connect(*.kind))]
pub struct ConnectError {
    pub kind: UpstreamErrorKind,
    #[source]
    source: io::Error,
}

fn describe_connect(kind: UpstreamErrorKind) -> &'static str {
    match kind {
        UpstreamErrorKind::Connect => "cannot connect to the upstream",
        UpstreamErrorKind::ConnectTimeout => {
            "no connection to the upstream within upstream_connect_timeout"
        }
        UpstreamErrorKind::Tls => {
            "TLS handshake with the upstream failed (is its certificate signed by \
             upstream_ca_cert_file and does it name the upstream host?)"
        }
    }
}

pub use kms_common::error::chain as error_chain;

/// Opens connections to the configured upstream, with a timeout.
#[derive(Clone)]
pub struct UpstreamConnector {
    target: Arc<Target>,
    timeout: Duration,
}

enum Target {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
        server_name: ServerName<'static>,
        connector: TlsConnector,
    },
}

impl UpstreamConnector {
    async fn connect(target: &Target) -> Result<UpstreamStream, ConnectError> {
        let connect_err = |source| ConnectError {
            kind: UpstreamErrorKind::Connect,
            source,
        };
        match target {
            Target::Unix(path) => UnixStream::connect(path)
                .await
                .map(UpstreamStream::Unix)
                .map_err(connect_err),
            Target::Tcp { host, port } => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(connect_err)?;
                let _ = tcp.set_nodelay(true);
                Ok(UpstreamStream::Tcp(tcp))
            }
            Target::Tls {
                host,
                port,
                server_name,
                connector,
            } => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(connect_err)?;
                let _ = tcp.set_nodelay(true);
                let tls = connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|source| ConnectError {
                        kind: UpstreamErrorKind::Tls,
                        source,
                    })?;
                Ok(UpstreamStream::Tls(Box::new(tls)))
            }
        }
    }
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let target = self.target.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, Self::connect(&target)).await {
                Ok(stream) => stream.map(TokioIo::new),
                Err(_) => Err(ConnectError {
                    kind: UpstreamErrorKind::ConnectTimeout,
                    source: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                }),
            }
        })
    }
}

/// Forwards requests to the upstream through a connection pool.
pub struct Forwarder {
    client: Client<UpstreamConnector, ProxyBody>,
    scheme: &'static str,
    authority: String,
    limits: Limits,
    identity_headers: IdentityHeaders,
    health_path: String,
    metrics: Metrics,
    /// Set in `upstream_identity = "jwt"` mode: the identity also goes as a minted JWT.
    minter: Option<Arc<Minter>>,
}

/// Headers that describe one hop, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

fn classify(error: &hyper_util::client::legacy::Error) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            return ProxyError::UpstreamConnect(connect.kind);
        }
        source = e.source();
    }
    if error.is_connect() {
        ProxyError::UpstreamConnect(UpstreamErrorKind::Connect)
    } else {
        ProxyError::UpstreamProtocol
    }
}

impl Forwarder {
    pub fn new(
        config: &Config,
        upstream_tls: Option<Arc<rustls::ClientConfig>>,
        metrics: Metrics,
        minter: Option<Arc<Minter>>,
    ) -> Result<Self, crate::error::StartError> {
        let (target, scheme) = match (&config.upstream, upstream_tls) {
            (Upstream::Unix(path), _) => (Target::Unix(path.clone()), "http"),
            (Upstream::Http { host, port }, _) => (
                Target::Tcp {
                    host: host.clone(),
                    port: *port,
                },
                "http",
            ),
            (Upstream::Https { host, port }, Some(tls)) => {
                let server_name = ServerName::try_from(host.clone()).map_err(|_| {
                    crate::error::StartError::Config(crate::config::ConfigError::Invalid {
                        key: "upstream",
                        reason: format!("{host:?} is not a valid TLS server name"),
                    })
                })?;
                (
                    Target::Tls {
                        host: host.clone(),
                        port: *port,
                        server_name,
                        connector: TlsConnector::from(tls),
                    },
                    "https",
                )
            }
            (Upstream::Https { .. }, None) => {
                return Err(crate::error::StartError::Config(
                    crate::config::ConfigError::Invalid {
                        key: "upstream",
                        reason: "https upstream without TLS settings".into(),
                    },
                ));
            }
        };
        let connector = UpstreamConnector {
            target: Arc::new(target),
            timeout: config.limits.upstream_connect_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .http1_max_buf_size(64 * 1024)
            .build(connector);
        Ok(Self {
            client,
            scheme,
            authority: config.upstream.authority(),
            limits: config.limits.clone(),
            identity_headers: IdentityHeaders::new(
                config.identity_header.clone(),
                &config
                    .auth
                    .jwt
                    .as_ref()
                    .map(|j| j.mapped_headers())
                    .unwrap_or_default(),
            ),
            health_path: config.upstream_health_path.clone(),
            metrics,
            minter,
        })
    }

    /// The token minter, in `upstream_identity = "jwt"` mode.
    pub fn minter(&self) -> Option<&Arc<Minter>> {
        self.minter.as_ref()
    }

    /// Sets the identity headers, and in jwt mode replaces any `Authorization` (the client's
    /// own credential never reaches the upstream) with a token minted for the identity.
    fn set_identity(
        &self,
        headers: &mut HeaderMap,
        identity: &Identity,
        peer: std::net::IpAddr,
        proto: &str,
    ) -> Result<(), ProxyError> {
        self.identity_headers.apply(headers, identity, peer, proto);
        if let Some(minter) = &self.minter {
            headers.remove(header::AUTHORIZATION);
            let token = minter.authorization(identity).map_err(|e| {
                tracing::error!(error = %e, "cannot mint the upstream identity token");
                ProxyError::Mint
            })?;
            headers.insert(header::AUTHORIZATION, token);
        }
        Ok(())
    }

    fn upstream_uri(&self, path_and_query: &str) -> Result<Uri, ProxyError> {
        Uri::builder()
            .scheme(self.scheme)
            .authority(self.authority.as_str())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| ProxyError::BadRequest)
    }

    /// Sends one request upstream as `identity`; `guard` lives until the response body ends.
    pub async fn forward<G: Send + Sync + 'static>(
        &self,
        request: Request<Incoming>,
        identity: &Identity,
        peer: SocketAddr,
        proto: &'static str,
        guard: G,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if header_bytes(request.headers()) > self.limits.max_header_size {
            return Err(ProxyError::HeadersTooLarge);
        }
        if let Some(length) = request.headers().get(header::CONTENT_LENGTH) {
            let length: u64 = length
                .to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or(ProxyError::BadRequest)?;
            if length > self.limits.max_body_size {
                return Err(ProxyError::BodyTooLarge);
            }
        }
        if request.method() == http::Method::CONNECT {
            return Err(ProxyError::BadRequest);
        }
        let (mut parts, body) = request.into_parts();
        if !parts.headers.contains_key(header::HOST) {
            // HTTP/2 carries the host in :authority; HTTP/1.1 upstreams need a Host header.
            if let Some(host) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(header::HOST, host);
            }
        }
        strip_hop_by_hop(&mut parts.headers);
        self.identity_headers.strip_inbound(&mut parts.headers);
        self.set_identity(&mut parts.headers, identity, peer.ip(), proto)?;
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.uri = self.upstream_uri(path)?;
        parts.version = Version::HTTP_11;

        let fault = FaultCell::default();
        let body = GuardedBody::new(
            body,
            Some(self.limits.max_body_size),
            self.limits.body_read_timeout,
            fault.clone(),
            (),
        )
        .boxed();
        let started = Instant::now();
        let sent = tokio::time::timeout(
            self.limits.upstream_timeout,
            self.client.request(Request::from_parts(parts, body)),
        )
        .await;
        self.metrics
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return Err(match fault.get() {
                    Some(fault) => fault.into(),
                    None => {
                        tracing::warn!(error = %error_chain(&e), "upstream request failed");
                        classify(&e)
                    }
                });
            }
            Err(_elapsed) => {
                return Err(fault.get().map_or(ProxyError::UpstreamTimeout, Into::into));
            }
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = GuardedBody::new(
            body,
            None,
            self.limits.body_read_timeout,
            FaultCell::default(),
            guard,
        )
        .boxed();
        Ok(Response::from_parts(parts, body))
    }

    /// The proxy's own call to the upstream (e.g. fetching the API token key), as the default
    /// user: status and body (at most 1 MiB), within the upstream timeout.
    pub async fn call_as(
        &self,
        identity: &Identity,
        method: http::Method,
        path: &str,
        body: bytes::Bytes,
    ) -> Result<(http::StatusCode, bytes::Bytes), ProxyError> {
        let mut request = Request::builder()
            .method(method)
            .uri(self.upstream_uri(path)?)
            .header(header::CONTENT_TYPE, "application/json")
            .body(
                http_body_util::Full::new(body)
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .map_err(|_| ProxyError::BadRequest)?;
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        self.set_identity(request.headers_mut(), identity, loopback, "https")?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| classify(&e))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), 1024 * 1024)
                .collect()
                .await
                .map_err(|_| ProxyError::UpstreamProtocol)?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.limits.upstream_timeout, exchange)
            .await
            .map_err(|_| ProxyError::UpstreamTimeout)?
    }

    /// Whether the upstream answers an HTTP request on its health path (any status), and if
    /// not, why.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let uri = self
            .upstream_uri(&self.health_path)
            .map_err(|_| format!("{} is not a valid path", self.health_path))?;
        let request = Request::get(uri).body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        );
        let request = request.map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        }
    }
}
