//! The client-facing server: accept loop with a connection limit, TLS handshake inside the
//! spawned task with a timeout, HTTP/1.1 and HTTP/2, idle timeout, graceful drain. Each request
//! is served by `request`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, PeerCertificate};
use crate::config::Limits;
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::request;

/// State shared by every connection.
pub struct Shared {
    pub forwarder: Arc<Forwarder>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub authenticator: Authenticator,
    pub tls: Option<TlsAcceptor>,
}

/// Activity of one connection, for the idle timeout.
pub(crate) struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    /// Requests in flight on this connection.
    requests: AtomicUsize,
    /// Requests ever started on this connection.
    served: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            served: AtomicU64::new(0),
        }
    }
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// An I/O stream that records when bytes last moved.
struct TrackedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts a request in flight (globally and on its connection) until dropped.
pub(crate) struct InFlight {
    gauge: IntGauge,
    activity: Arc<Activity>,
}

impl InFlight {
    pub(crate) fn new(gauge: IntGauge, activity: Arc<Activity>) -> Self {
        gauge.inc();
        activity.requests.fetch_add(1, Ordering::Relaxed);
        activity.served.fetch_add(1, Ordering::Relaxed);
        Self { gauge, activity }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
        self.activity.requests.fetch_sub(1, Ordering::Relaxed);
        self.activity.touch();
    }
}

/// Why a client's TLS handshake failed, as a bounded label: `unknown_ca`, `expired`,
/// `revoked`, `no_certificate`, `bad_certificate` (any other certificate fault) or `protocol`
/// (not TLS, no common version or cipher, the client closed or reset the connection).
pub fn handshake_refusal(error: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    match error.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer => "unknown_ca",
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => "expired",
            CertificateError::Revoked => "revoked",
            _ => "bad_certificate",
        },
        Some(Error::NoCertificatesPresented) => "no_certificate",
        _ => "protocol",
    }
}

/// At most [`Self::PER_SECOND`] info lines a second (the rest at debug): a flood of bad
/// handshakes must not flood the log.
struct LogBudget {
    second: AtomicU64,
    used: AtomicU64,
}

impl LogBudget {
    const PER_SECOND: u64 = 10;

    fn allow(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.used.store(0, Ordering::Relaxed);
        }
        self.used.fetch_add(1, Ordering::Relaxed) < Self::PER_SECOND
    }
}

static HANDSHAKE_LOGS: LogBudget = LogBudget {
    second: AtomicU64::new(0),
    used: AtomicU64::new(0),
};

/// Decrements a gauge when dropped.
struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own caps sit above ours, so the proxy usually answers an oversized header
    // block itself with a JSON 431; beyond the cap hyper answers 431 (HTTP/1.1) or resets.
    let hard_cap = limits.max_header_size.saturating_mul(2).max(16 * 1024);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(hard_cap)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(hard_cap).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Serves one accepted TCP connection to its end.
async fn serve_connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _open = GaugeGuard::new(shared.metrics.open_connections.clone());
    let _ = tcp.set_nodelay(true);
    let mut certificate = PeerCertificate::Absent;
    let (io, proto) = match &shared.tls {
        Some(acceptor) => {
            match tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(tls)) => {
                    // Verified by rustls against the authority bundle; read the user once.
                    certificate = match tls.get_ref().1.peer_certificates() {
                        Some([leaf, ..]) => {
                            PeerCertificate::Verified(shared.authenticator.certificate_user(leaf))
                        }
                        _ => PeerCertificate::Absent,
                    };
                    (Either::Left(tls), "https")
                }
                Ok(Err(e)) => {
                    let reason = handshake_refusal(&e);
                    shared
                        .metrics
                        .tls_handshake_failures
                        .with_label_values(&[reason])
                        .inc();
                    if HANDSHAKE_LOGS.allow() {
                        tracing::info!(peer = %peer.ip(), reason, error = %e, "TLS handshake refused");
                    } else {
                        tracing::debug!(peer = %peer.ip(), reason, error = %e, "TLS handshake refused");
                    }
                    return;
                }
                Err(_) => {
                    shared
                        .metrics
                        .tls_handshake_failures
                        .with_label_values(&["timeout"])
                        .inc();
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
        None => (Either::Right(tcp), "http"),
    };
    let certificate = Arc::new(certificate);
    let activity = Arc::new(Activity::new());
    let io = TrackedIo {
        inner: io,
        activity: activity.clone(),
    };
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        service_fn(move |request| {
            let shared = shared.clone();
            let activity = activity.clone();
            let certificate = certificate.clone();
            async move {
                Ok::<_, Infallible>(
                    request::handle(shared, activity, peer, proto, certificate, request).await,
                )
            }
        })
    };
    let builder = http_builder(&shared.limits);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let idle_timeout = shared.limits.idle_timeout;
    let first_request_timeout = shared.limits.header_read_timeout;
    let period = (idle_timeout.min(first_request_timeout) / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(period);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = ticker.tick(), if !closing => {
                // Idle keep-alive, or a connection that never completed a first request
                // (HTTP/2 clients, or clients that send nothing, escape hyper's header timer).
                let idle = activity.requests.load(Ordering::Relaxed) == 0
                    && activity.idle_for() >= idle_timeout;
                let never_asked = activity.served.load(Ordering::Relaxed) == 0
                    && activity.epoch.elapsed() >= first_request_timeout;
                if idle || never_asked {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Accepts connections until `shutdown` turns true, then waits (up to the deadline) for open
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(shared.limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared.metrics.connections_rejected.inc();
            tracing::warn!(peer = %peer, "connection limit reached; closing new connection");
            drop(tcp);
            continue;
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            serve_connection(shared, tcp, peer, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    let open = tracker.len();
    tracing::info!(open_connections = open, "no longer accepting; draining");
    if tokio::time::timeout(shared.limits.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = tracker.len(),
            "drain deadline reached; closing the remaining connections"
        );
    } else {
        tracing::info!("all connections drained");
    }
}
