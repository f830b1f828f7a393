//! kms-core: the key-management core behind kms-proxy. It serves KMIP 2.1 JSON TTLV and the
//! access-rights API on a Unix socket, stores keys wrapped by a master key in SQLite or
//! PostgreSQL, and trusts the `X-KMS-User` header because only the proxy can reach it.

pub mod admin;
pub mod config;
pub mod crypto;
pub mod error;
pub mod http;
pub mod kmip;
pub mod master_key;
pub mod metrics;
pub mod object;
pub mod store;

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Registry;
use tokio::net::{TcpListener, UnixListener};

use crate::config::Flags;
use crate::http::AppState;
use crate::kmip::ops::Kms;
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| fail(e.to_string()))?;
    Ok(listener)
}

pub struct App {
    listener: UnixListener,
    admin: TcpListener,
    state: Arc<AppState>,
    registry: Registry,
    socket: std::path::PathBuf,
}

impl App {
    pub async fn bind(flags: &Flags) -> Result<Self, StartError> {
        let master =
            master_key::load(flags.master_key_file.as_deref(), flags.dev, &flags.data_dir)?;
        let url = flags.database_url();
        if url.starts_with("sqlite") {
            std::fs::create_dir_all(&flags.data_dir).map_err(|e| StartError::Socket {
                path: flags.data_dir.display().to_string(),
                reason: e.to_string(),
            })?;
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
        let state = Arc::new(AppState {
            kms: Kms::new(store, master),
            metrics,
            max_body_size: flags.max_body_size,
        });
        Ok(Self {
            listener,
            admin,
            state,
            registry,
            socket: flags.socket.clone(),
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
        let tracker = tokio_util_tracker();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let state = self.state.clone();
                    tracker.spawn(async move {
                        let service = service_fn(move |request| http::handle(state.clone(), request));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(std::time::Duration::from_secs(10))
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
        tracker.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), tracker.wait()).await;
        admin.abort();
        let _ = std::fs::remove_file(&self.socket);
        tracing::info!("kms-core stopped");
    }
}

fn tokio_util_tracker() -> tokio_util::task::TaskTracker {
    tokio_util::task::TaskTracker::new()
}
