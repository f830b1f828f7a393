//! The connection side of the upstream: its transports (Unix socket, TCP, TLS), opening a
//! connection within the connect timeout, and telling whether an idle one is still open.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{Config, Upstream};
use crate::error::{StartError, UpstreamErrorKind};

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

impl UpstreamStream {
    /// Whether an idle connection is still open: nothing to read, not even its end. Whatever
    /// an idle connection could have sent (its end, a TLS close_notify, stray bytes) means it
    /// must not carry another request. Asks the socket itself (a peek), not the runtime's
    /// record of its readiness, which may not have seen the end yet.
    pub fn is_open(&self) -> bool {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        let peeked = match self {
            Self::Unix(s) => socket2::SockRef::from(s).peek(&mut byte),
            Self::Tcp(s) => socket2::SockRef::from(s).peek(&mut byte),
            Self::Tls(s) => socket2::SockRef::from(s.get_ref().0).peek(&mut byte),
        };
        matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
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
    /// The connector for the configured upstream, and the scheme of its URLs.
    pub fn new(
        config: &Config,
        upstream_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<(Self, &'static str), StartError> {
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
                    StartError::Config(crate::config::ConfigError::Invalid {
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
                return Err(StartError::Config(crate::config::ConfigError::Invalid {
                    key: "upstream",
                    reason: "https upstream without TLS settings".into(),
                }));
            }
        };
        let connector = Self {
            target: Arc::new(target),
            timeout: config.limits.upstream_connect_timeout,
        };
        Ok((connector, scheme))
    }

    /// Opens a connection, within the connect timeout.
    pub async fn open(&self) -> Result<UpstreamStream, ConnectError> {
        match tokio::time::timeout(self.timeout, Self::connect(&self.target)).await {
            Ok(stream) => stream,
            Err(_) => Err(ConnectError {
                kind: UpstreamErrorKind::ConnectTimeout,
                source: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }),
        }
    }

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
        let this = self.clone();
        Box::pin(async move { this.open().await.map(TokioIo::new) })
    }
}
