//! The client-facing server: accept loop with a connection limit, TLS handshake inside the
//! spawned task with a timeout, graceful drain. A connection is then served by `connection`
//! (HTTP/1.1 parked while idle, HTTP/2, idle timeout) and each request by `request`.

mod activity;
mod connection;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::task::TaskTracker;

pub(crate) use activity::{Activity, InFlight};
pub(crate) use connection::Handler;
use connection::{Driver, Protocol};

use crate::auth::{Authenticator, PeerCertificate};
use crate::config::Limits;
use crate::forward::Forwarder;
use crate::identity::Peer;
use crate::metrics::Metrics;

/// State shared by every connection.
pub struct Shared {
    pub forwarder: Arc<Forwarder>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub authenticator: Authenticator,
    pub tls: Option<TlsAcceptor>,
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
pub(crate) struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub(crate) fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves one accepted TCP connection to its end.
async fn serve_connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _open = GaugeGuard::new(shared.metrics.open_connections.clone());
    let _ = tcp.set_nodelay(true);
    let mut certificate = PeerCertificate::Absent;
    let (io, proto, protocol) = match &shared.tls {
        Some(acceptor) => {
            // Boxed, like the stream it yields: a connection's task keeps the size of its largest
            // state for as long as it lives, and most of its life is spent idle.
            let handshake =
                tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(tcp));
            match Box::pin(handshake).await {
                Ok(Ok(tls)) => {
                    // Verified by rustls against the authority bundle; read the user once.
                    certificate = match tls.get_ref().1.peer_certificates() {
                        Some([leaf, ..]) => {
                            PeerCertificate::Verified(shared.authenticator.certificate_user(leaf))
                        }
                        _ => PeerCertificate::Absent,
                    };
                    let protocol = match tls.get_ref().1.alpn_protocol() {
                        Some(b"h2") => Protocol::Http2,
                        Some(_) => Protocol::Http1,
                        None => Protocol::Unknown,
                    };
                    (Either::Left(Box::new(tls)), "https", protocol)
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
        None => (Either::Right(tcp), "http", Protocol::Unknown),
    };
    let activity = Arc::new(Activity::new());
    // HTTP/1 clients send one request at a time: each connection gets its own upstream
    // connection (a connection that turns out to speak HTTP/2 drops it).
    let lane = (protocol != Protocol::Http2).then(|| Arc::new(shared.forwarder.lane()));
    let handler = Handler {
        shared,
        activity,
        peer: Peer::new(peer),
        proto,
        certificate: Arc::new(certificate),
        lane,
    };
    // Boxed: the connection's task then holds only what its state needs.
    Box::pin(Driver::new(handler, shutdown).run(io, protocol)).await;
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
