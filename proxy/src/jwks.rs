//! Serving the upstream identity keys: `<issuer>/.well-known/jwks.json` and
//! `<issuer>/.well-known/openid-configuration`, answered by the proxy itself without
//! authentication and never forwarded — on the main listener, and on a listener of their own
//! (TLS, no client certificate) when `upstream_jwt_jwks_address` is set.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::body::ProxyBody;
use crate::error::json_error;
use crate::mint::Minter;

/// Connections the keys listener serves at once.
const MAX_CONNECTIONS: usize = 256;
/// Time for a client of the keys listener to finish the handshake and its request.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The answer for a well-known path, or `None` when `path` is not one of them.
pub fn answer<B>(minter: &Minter, request: &Request<B>) -> Option<Response<ProxyBody>> {
    let document = minter.document(request.uri().path())?;
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut refused = json_error(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        refused
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(refused);
    }
    let body = if request.method() == Method::HEAD {
        Bytes::new()
    } else {
        document
    };
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Short: a rotation must reach the verifiers well within a token lifetime.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Some(response)
}

/// The keys listener: the two documents, 404 for anything else.
pub async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    minter: Arc<Minter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "keys listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let tls = tls.clone();
        let minter = minter.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) = tokio::time::timeout(TIMEOUT, tls.accept(tcp)).await else {
                tracing::debug!(peer = %peer, "keys listener: TLS handshake failed");
                return;
            };
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = answer(&minter, &request).unwrap_or_else(|| {
                    json_error(
                        StatusCode::NOT_FOUND,
                        "only the upstream identity keys are served here",
                    )
                });
                async move { Ok::<_, Infallible>(response) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(TIMEOUT * 6, connection).await;
        });
    }
}
