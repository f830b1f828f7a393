//! kms-core: the key-management core behind kms-proxy. It serves KMIP 2.1 JSON TTLV and the
//! access-rights API on a Unix socket, stores keys wrapped by a master key in SQLite or
//! PostgreSQL, and trusts the `X-KMS-User` header because only the proxy can reach it.

pub mod acl;
pub mod admin;
pub mod asymmetric;
pub mod certificates;
pub mod config;
pub mod crypto;
pub mod error;
pub mod files;
pub mod hashing;
pub mod hsm;
pub mod http;
pub mod key_wrap;
pub mod kmip;
pub mod master_key;
pub mod metrics;
pub mod object;
pub mod store;
pub mod symmetric;
pub mod tcp;
pub mod wrapping;

use std::future::Future;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Registry;
use tokio::net::{TcpListener, UnixListener};

use crate::config::Config;
use crate::http::AppState;
use crate::kmip::kms::Kms;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    MasterKey(#[from] master_key::MasterKeyError),
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    #[error("socket {path}: {reason}")]
    Socket { path: String, reason: String },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Tcp(#[from] tcp::TcpError),
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Hsm(#[from] hsm::HsmError),
}

/// The key-encryption keys: the HSM (when configured) and the master key file (required
/// unless the HSM holds a KEK; with both, keys wrapped by either can be read).
pub fn load_wrappers(flags: &Config) -> Result<wrapping::Wrappers, StartError> {
    let hsm = match flags.hsm().map_err(StartError::Config)? {
        Some(config) => {
            let hsm = hsm::Hsm::open(&config)?;
            tracing::info!(module = %config.module.display(), kek = %config.kek_label.as_deref().unwrap_or(""), "HSM opened");
            Some(Arc::new(hsm))
        }
        None => None,
    };
    let kek_in_hsm = hsm.as_ref().is_some_and(|h| h.has_kek());
    let master = if kek_in_hsm && flags.master_key_file.is_none() && !flags.dev {
        None
    } else {
        Some(master_key::load(
            flags.master_key_file.as_deref(),
            flags.dev,
            &flags.data_dir,
        )?)
    };
    Ok(wrapping::Wrappers {
        master,
        hsm,
        hsm_admins: flags.hsm_admin.clone(),
    })
}

/// `kms-core rewrap --to <hsm|master>`: re-wraps every stored key under the other
/// key-encryption key, one key per transaction (an interrupted run can simply be run again).
pub async fn rewrap(flags: &Config, to: wrapping::Wrapping) -> Result<usize, StartError> {
    let keys = load_wrappers(flags)?;
    let from = match to {
        wrapping::Wrapping::Hsm => wrapping::Wrapping::Master,
        wrapping::Wrapping::Master => wrapping::Wrapping::Hsm,
        wrapping::Wrapping::Resident => {
            return Err(StartError::Config(
                "HSM-resident keys are not wrapped: rewrap --to hsm or --to master".into(),
            ));
        }
    };
    let fail = |e: error::KmsError| StartError::Config(e.to_string());
    // Both keys must be at hand before anything changes.
    keys.wrap_with(to, "probe", &[0u8; 32]).map_err(fail)?;
    let store = store::Store::open(&flags.database_url, 2).await?;
    let mut moved = 0;
    for (uid, wrapped) in store.wrapped_under(from).await? {
        let key = keys.unwrap(from, &uid, &wrapped).map_err(fail)?;
        let rewrapped = keys.wrap_with(to, &uid, &key).map_err(fail)?;
        if store.rewrap(&uid, from, to, &rewrapped).await? {
            moved += 1;
        }
    }
    tracing::info!(moved, from = from.as_str(), to = to.as_str(), "rewrap done");
    Ok(moved)
}

/// Binds the Unix socket: refuses when another process serves it, replaces a stale one.
async fn bind_socket(path: &Path) -> Result<UnixListener, StartError> {
    let fail = |reason: String| StartError::Socket {
        path: path.display().to_string(),
        reason,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(fail("exists and is not a socket".into()));
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(fail("another process is serving it".into()));
        }
        std::fs::remove_file(path).map_err(|e| fail(e.to_string()))?;
    }
    files::bind_private_socket(path).map_err(|e| fail(e.to_string()))
}

pub struct App {
    listener: UnixListener,
    tcp: Option<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    admin: TcpListener,
    state: Arc<AppState>,
    registry: Registry,
    socket: std::path::PathBuf,
    rotation_every: std::time::Duration,
    timeouts: Timeouts,
}

/// How long the server waits: for in-flight requests at shutdown, for a request's headers,
/// for a TLS handshake on TCP.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    drain: std::time::Duration,
    header_read: std::time::Duration,
    handshake: std::time::Duration,
}

impl App {
    pub async fn bind(flags: &Config) -> Result<Self, StartError> {
        let tls = match flags.listen {
            Some(address) => Some((address, tcp::acceptor(flags, address)?)),
            None => None,
        };
        let keys = load_wrappers(flags)?;
        let url = flags.database_url.clone();
        if url.starts_with("sqlite") {
            let private = |path: &Path, e: std::io::Error| StartError::Socket {
                path: path.display().to_string(),
                reason: e.to_string(),
            };
            files::private_dir(&flags.data_dir).map_err(|e| private(&flags.data_dir, e))?;
            if let Some(db) = files::sqlite_path(&url) {
                files::private_database(&db).map_err(|e| private(&db, e))?;
            }
        }
        let store = store::Store::open(&url, flags.database_max_connections).await?;
        let registry = Registry::new();
        let metrics = Metrics::register(&registry)?;
        let listener = bind_socket(&flags.socket).await?;
        let admin = TcpListener::bind(flags.admin_address)
            .await
            .map_err(|source| StartError::Bind {
                address: flags.admin_address,
                source,
            })?;
        let tcp = match tls {
            Some((address, acceptor)) => {
                let listener = TcpListener::bind(address)
                    .await
                    .map_err(|source| StartError::Bind { address, source })?;
                Some((listener, acceptor))
            }
            None => None,
        };
        let state = Arc::new(AppState {
            kms: Kms::new(store, keys),
            metrics,
            max_body_size: flags.max_body_size,
            large_bodies: Arc::new(tokio::sync::Semaphore::new(flags.max_large_requests.max(1))),
        });
        Ok(Self {
            listener,
            tcp,
            admin,
            state,
            registry,
            socket: flags.socket.clone(),
            rotation_every: flags.rotation_check_interval,
            timeouts: Timeouts {
                drain: flags.drain_timeout,
                header_read: flags.header_read_timeout,
                handshake: flags.handshake_timeout,
            },
        })
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let admin_address = self
            .admin
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(
            backend = self.state.kms.store.backend.name(),
            "database ready"
        );
        tracing::info!("admin listening on http://{admin_address}");
        tracing::info!("kms-core listening on unix:{}", self.socket.display());
        let admin = tokio::spawn(admin::serve(self.admin, self.state.clone(), self.registry));
        let rotation = {
            let state = self.state.clone();
            let every = self.rotation_every;
            tokio::spawn(async move { kmip::rotation::run(&state.kms, every).await })
        };
        let tracker = tokio_util::task::TaskTracker::new();
        let tcp_task = self.tcp.map(|(listener, acceptor)| {
            let scheme = if acceptor.is_some() { "https" } else { "http" };
            if let Ok(address) = listener.local_addr() {
                tracing::info!("kms-core listening on {scheme}://{address}");
            }
            tokio::spawn(serve_tcp(
                listener,
                acceptor,
                self.state.clone(),
                tracker.clone(),
                self.timeouts,
            ))
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                            _ = &mut shutdown => break,
                            accepted = self.listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
            tracker.spawn(serve_io(stream, self.state.clone(), self.timeouts.header_read));
                            }
                        }
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
        if let Some(task) = tcp_task {
            task.abort();
        }
        tracker.close();
        let _ = tokio::time::timeout(self.timeouts.drain, tracker.wait()).await;
        admin.abort();
        rotation.abort();
        let _ = std::fs::remove_file(&self.socket);
        tracing::info!("kms-core stopped");
    }
}

/// Serves one HTTP/1.1 connection of any transport.
async fn serve_io<I>(io: I, state: Arc<AppState>, header_read: std::time::Duration)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| http::handle(state.clone(), request));
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn serve_tcp(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
    tracker: tokio_util::task::TaskTracker,
    timeouts: Timeouts,
) {
    while let Ok((stream, peer)) = listener.accept().await {
        let state = state.clone();
        let acceptor = acceptor.clone();
        tracker.spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_io(tls, state, timeouts.header_read).await,
                        Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake refused"),
                        Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_io(stream, state, timeouts.header_read).await,
            }
        });
    }
}
