//! kms-proxy: a TLS-terminating sidecar that decides who the caller is and forwards the
//! request to the key-management core with the identity in `X-KMS-User`.

pub mod access;
pub mod admin;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod forward;
pub mod identity;
pub mod jwks;
pub mod metrics;
pub mod mint;
mod request;
pub mod server;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, ServerCert};
use crate::error::StartError;
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::tls::CertStore;

/// A proxy whose ports are bound and whose certificates are loaded, ready to run.
pub struct App {
    listener: TcpListener,
    admin_listener: TcpListener,
    shared: Arc<server::Shared>,
    admin: Arc<admin::AdminState>,
    reload: Option<(Arc<CertStore>, ServerCert, Option<Arc<tls::ClientTrust>>)>,
    /// The upstream identity keys' own listener, when configured.
    jwks_listener: Option<(TcpListener, TlsAcceptor)>,
    config: Config,
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}

impl App {
    /// Loads certificates, builds the upstream client, binds both listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry)?;
        let (acceptor, reload) = match &config.server_cert {
            Some(source) => {
                let loaded = tls::load_server_cert(source)?;
                metrics.cert_not_after.set(loaded.not_after);
                let store = Arc::new(CertStore::new(&loaded));
                let trust = match &config.auth.mtls {
                    Some(mtls) => Some(tls::ClientTrust::load(mtls)?),
                    None => None,
                };
                let acceptor = TlsAcceptor::from(tls::server_config(store.clone(), trust.clone())?);
                (Some(acceptor), Some((store, source.clone(), trust)))
            }
            None => (None, None),
        };
        let upstream_tls = match config.upstream {
            config::Upstream::Https { .. } => {
                Some(tls::upstream_client_config(&config.upstream_tls)?)
            }
            _ => None,
        };
        let minter = match &config.upstream_jwt {
            Some(settings) => Some(Arc::new(mint::Minter::new(settings)?)),
            None => None,
        };
        let forwarder = Arc::new(Forwarder::new(
            &config,
            upstream_tls,
            metrics.clone(),
            minter,
        )?);
        let listener = bind(config.listen).await?;
        let admin_listener = bind(config.admin_address).await?;
        let jwks_listener = match (
            config.upstream_jwt.as_ref().and_then(|j| j.jwks_address),
            &reload,
        ) {
            (Some(address), Some((store, _, _))) => Some((
                bind(address).await?,
                TlsAcceptor::from(tls::server_config(store.clone(), None)?),
            )),
            _ => None,
        };
        let authenticator = auth::Authenticator::new(&config, &metrics)?;
        let shared = Arc::new(server::Shared {
            forwarder: forwarder.clone(),
            metrics,
            limits: config.limits.clone(),
            authenticator,
            tls: acceptor,
        });
        let admin = Arc::new(admin::AdminState {
            registry,
            forwarder,
            api_token: shared.authenticator.api_token.clone(),
            jwt: shared.authenticator.jwt.clone(),
        });
        Ok(Self {
            listener,
            admin_listener,
            shared,
            admin,
            reload,
            jwks_listener,
            config,
        })
    }

    /// The upstream identity keys' own listener's address, when configured.
    pub fn jwks_addr(&self) -> Option<SocketAddr> {
        self.jwks_listener
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// The address clients connect to (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let address = self.local_addr()?;
        let admin_address = self.admin_addr()?;
        if self.shared.tls.is_none() {
            tracing::warn!(
                "INSECURE: serving plain HTTP without TLS (insecure_http); credentials and keys cross the network in clear. Development only."
            );
        }
        if !self.shared.authenticator.is_configured() {
            tracing::warn!(
                default_username = %self.config.default_username,
                "no authentication method is configured: every request is forwarded as the default user"
            );
        }
        tracing::info!(address = %admin_address, "admin listening on http://{admin_address}");
        tracing::info!(address = %address, upstream = %self.config.upstream, "kms-proxy listening on {scheme}://{address}");

        let (stop, stopped) = watch::channel(false);
        let reloader = self.reload.map(|(store, source, trust)| {
            tokio::spawn(tls::watch_reload(
                store,
                source,
                trust,
                self.config.cert_reload_interval,
                self.shared.metrics.clone(),
                stopped.clone(),
            ))
        });
        let token_refresh = match (
            &self.shared.authenticator.api_token,
            &self.config.auth.api_token,
        ) {
            (Some(verifier), Some((_, interval))) => {
                Some(tokio::spawn(auth::api_token::keep_fresh(
                    verifier.clone(),
                    self.admin.forwarder.clone(),
                    auth::api_token::service_identity(&self.config.default_username),
                    *interval,
                    stopped.clone(),
                )))
            }
            _ => None,
        };
        let jwks_refresh = self
            .shared
            .authenticator
            .jwt
            .clone()
            .map(|jwt| tokio::spawn(jwt.keep_fresh(stopped.clone())));
        let minter = self.shared.forwarder.minter().cloned();
        let key_refresh = minter
            .clone()
            .map(|m| tokio::spawn(m.keep_fresh(self.config.cert_reload_interval, stopped.clone())));
        let jwks_server = match (self.jwks_listener, minter) {
            (Some((listener, acceptor)), Some(minter)) => {
                let address = listener.local_addr()?;
                tracing::info!(address = %address, "upstream identity keys also served on https://{address}");
                Some(tokio::spawn(jwks::serve(
                    listener,
                    acceptor,
                    minter,
                    stopped.clone(),
                )))
            }
            _ => None,
        };
        let idle_sweep = tokio::spawn(self.shared.forwarder.clone().sweep_idle(stopped.clone()));
        let admin = tokio::spawn(admin::serve(
            self.admin_listener,
            self.admin,
            stopped.clone(),
        ));
        let main = tokio::spawn(server::serve(self.listener, self.shared, stopped));
        shutdown.await;
        tracing::info!("shutdown requested");
        let _ = stop.send(true);
        let _ = main.await;
        admin.abort();
        if let Some(task) = token_refresh {
            task.abort();
        }
        idle_sweep.abort();
        for task in [jwks_refresh, key_refresh, jwks_server]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        tracing::info!("kms-proxy stopped");
        Ok(())
    }
}
