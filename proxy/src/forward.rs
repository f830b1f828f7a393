//! The forwarding of one request to the upstream (Unix socket, http or https): bounds,
//! hop-by-hop headers, identity headers, timeouts, streaming both ways. An HTTP/1 client
//! connection's requests go on its own upstream connection (its [`Lane`]); HTTP/2 clients'
//! and the proxy's own requests go through a pooled client.

mod lane;
mod upstream;

pub use lane::Lane;
use lane::{IdlePool, LaneError};
use upstream::{ConnectError, UpstreamConnector};

pub use kms_common::error::chain as error_chain;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{FaultCell, GuardedBody, ProxyBody};
use crate::config::{Config, Limits};
use crate::error::{ProxyError, UpstreamErrorKind};
use crate::identity::{Identity, IdentityHeaders, Peer};
use crate::metrics::Metrics;
use crate::mint::Minter;

/// How long an idle upstream connection is kept, and how many are.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const MAX_IDLE: usize = 256;
/// The most an upstream connection buffers of an answer's head.
const UPSTREAM_MAX_BUF: usize = 64 * 1024;

/// Forwards requests to the upstream: on lanes, or through a connection pool.
pub struct Forwarder {
    client: Client<UpstreamConnector, ProxyBody>,
    connector: UpstreamConnector,
    /// Idle upstream connections the lanes share.
    idle: Arc<IdlePool>,
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
    // Most messages carry none: one pass over the names (no hashing) finds out.
    if !headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(name) || name == "proxy-connection")
    {
        return;
    }
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
        let (connector, scheme) = UpstreamConnector::new(config, upstream_tls)?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE)
            .http1_max_buf_size(UPSTREAM_MAX_BUF)
            .build(connector.clone());
        Ok(Self {
            client,
            connector,
            idle: Arc::new(IdlePool::new(MAX_IDLE, IDLE_TIMEOUT)),
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

    /// Closes idle upstream connections that expired or that the upstream closed, every
    /// tenth of the idle timeout, until `stop` turns true.
    pub async fn sweep_idle(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = tokio::time::interval(IDLE_TIMEOUT / 10);
        loop {
            tokio::select! {
                _ = every.tick() => self.idle.sweep(),
                _ = stop.changed() => return,
            }
        }
    }

    /// A lane for a new HTTP/1 client connection.
    pub fn lane(&self) -> Lane {
        Lane::new(self.idle.clone())
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
        peer: &Peer,
        proto: &'static str,
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

    /// Sends one request upstream as `identity`, on `lane` if the client connection has one;
    /// `guard` lives until the response body ends.
    pub async fn forward<G: Send + Sync + 'static>(
        &self,
        request: Request<Incoming>,
        identity: &Identity,
        peer: &Peer,
        proto: &'static str,
        guard: G,
        lane: Option<&Lane>,
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
        self.set_identity(&mut parts.headers, identity, peer, proto)?;
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.uri = match lane {
            // A connection of its own sends the request target as it is (origin-form).
            Some(_) => Uri::try_from(path).map_err(|_| ProxyError::BadRequest)?,
            None => self.upstream_uri(path)?,
        };
        if lane.is_some() && !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(
                header::HOST,
                HeaderValue::from_str(&self.authority).map_err(|_| ProxyError::BadRequest)?,
            );
        }
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
        let request = Request::from_parts(parts, body);
        // Failures carry what the proxy answers and, for the log, what went wrong.
        let exchange = async {
            match lane {
                Some(lane) => lane.send(&self.connector, request).await.map_err(|e| {
                    let answer = match &e {
                        LaneError::Connect(connect) => ProxyError::UpstreamConnect(connect.kind),
                        LaneError::Http(_) => ProxyError::UpstreamProtocol,
                    };
                    (answer, error_chain(&e))
                }),
                None => (self.client.request(request).await)
                    .map_err(|e| (classify(&e), error_chain(&e))),
            }
        };
        let sent = tokio::time::timeout(self.limits.upstream_timeout, exchange).await;
        self.metrics
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        let response = match sent {
            Ok(Ok(response)) => response,
            // A request whose own body failed (too large, stalled, malformed) is the client's
            // error, not the upstream's.
            Ok(Err((answer, cause))) => {
                return Err(match fault.get() {
                    Some(fault) => fault.into(),
                    None => {
                        tracing::warn!(error = %cause, "upstream request failed");
                        answer
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
        let loopback = Peer::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        self.set_identity(request.headers_mut(), identity, &loopback, "https")?;
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
