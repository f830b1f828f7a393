//! kms-k8s-plugin: the Kubernetes KMS v2 plugin of kms-proxy / kms-core. It serves
//! `v2.KeyManagementService` on a Unix socket beside kube-apiserver and encrypts the
//! apiserver's data keys with one key of the KMS, through kms-proxy.

pub mod admin;
pub mod api;
pub mod config;
pub mod kms;
pub mod metrics;
pub mod plugin;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};

use crate::config::Config;

/// A call may take at most this long, KMS round trips included.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Binds the socket and the admin listener, then serves until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let metrics = metrics::Metrics::new().map_err(|e| format!("metrics: {e}"))?;
    let kms = kms::Kms::new(&config)?;
    let plugin = Arc::new(plugin::Plugin::new(
        kms,
        config.key.clone(),
        config.health_ttl,
        metrics.clone(),
    ));
    let admin = TcpListener::bind(config.admin_address)
        .await
        .map_err(|e| format!("admin listener {}: {e}", config.admin_address))?;
    // A socket left by an earlier run is replaced; any other file there is not touched.
    if let Ok(meta) = std::fs::symlink_metadata(&config.socket) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket: refusing to replace it",
                config.socket.display()
            ));
        }
        std::fs::remove_file(&config.socket)
            .map_err(|e| format!("{}: {e}", config.socket.display()))?;
    }
    let listener = UnixListener::bind(&config.socket)
        .map_err(|e| format!("socket {}: {e}", config.socket.display()))?;
    std::fs::set_permissions(&config.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("socket {}: {e}", config.socket.display()))?;
    tracing::info!(
        "kms-k8s-plugin admin listening on http://{}",
        admin.local_addr().unwrap_or(config.admin_address)
    );
    tracing::info!(
        "kms-k8s-plugin listening on unix:{}",
        config.socket.display()
    );
    tokio::spawn(admin::serve(admin, metrics));
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tonic::transport::Server::builder()
        .timeout(CALL_DEADLINE)
        .concurrency_limit_per_connection(256)
        .add_service(api::Server(plugin))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("gRPC server: {e}"))?;
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}
