//! The admin listener: `/metrics` (Prometheus text), `/healthz` (process up), `/readyz`
//! (the upstream answers). Plain HTTP, bound to loopback by default.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ProxyBody;
use crate::error::json_error;
use crate::forward::Forwarder;

pub struct AdminState {
    pub registry: Registry,
    pub forwarder: Arc<Forwarder>,
    pub api_token: Option<Arc<crate::auth::api_token::ApiTokenVerifier>>,
    pub jwt: Option<Arc<crate::auth::jwt::JwtVerifier>>,
}

fn text(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn route(state: &AdminState, request: &Request<Incoming>) -> Response<ProxyBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    match request.uri().path() {
        "/metrics" => {
            let encoder = TextEncoder::new();
            let mut out = Vec::new();
            match encoder.encode(&state.registry.gather(), &mut out) {
                Ok(()) => text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    out,
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode metrics");
                    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
            }
        }
        "/healthz" => text(
            StatusCode::OK,
            "application/json",
            br#"{"status":"ok"}"#.to_vec(),
        ),
        "/readyz" => {
            let waiting: Vec<&str> = state
                .jwt
                .as_ref()
                .map(|j| j.not_ready())
                .unwrap_or_default();
            if state.api_token.as_ref().is_some_and(|t| !t.is_loaded()) {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    br#"{"ready":false,"reason":"API token key not loaded"}"#.to_vec(),
                )
            } else if !waiting.is_empty() {
                let body = serde_json::json!({
                    "ready": false,
                    "reason": "JWKS not loaded",
                    "providers": waiting,
                });
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    body.to_string().into_bytes(),
                )
            } else {
                match state.forwarder.probe(Duration::from_secs(2)).await {
                    Ok(()) => text(
                        StatusCode::OK,
                        "application/json",
                        br#"{"ready":true}"#.to_vec(),
                    ),
                    Err(cause) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "application/json",
                        serde_json::json!({
                            "ready": false,
                            "reason": "upstream not answering",
                            "cause": cause,
                        })
                        .to_string()
                        .into_bytes(),
                    ),
                }
            }
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The container health check: true when `/healthz` at `address` answers 200 within 3 s. An
/// unspecified address (`0.0.0.0`, `::`) is asked on loopback.
pub fn health_check(address: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let mut target = address;
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = Duration::from_secs(3);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&target, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200"
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
