//! The core's admin listener: `/metrics`, `/healthz`, `/readyz` (database and HSM reachable).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::http::AppState;

fn plain(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

pub async fn serve(listener: TcpListener, state: Arc<AppState>, registry: Registry) {
    let registry = Arc::new(registry);
    while let Ok((stream, _)) = listener.accept().await {
        let state = state.clone();
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let state = state.clone();
                let registry = registry.clone();
                async move {
                    let response = match request.uri().path() {
                        "/metrics" => {
                            state.metrics.insert_counts(state.kms.store.insert_counts());
                            let (size, idle) = state.kms.store.pool_size();
                            state
                                .metrics
                                .pool
                                .with_label_values(&["idle"])
                                .set(i64::try_from(idle).unwrap_or(0));
                            state
                                .metrics
                                .pool
                                .with_label_values(&["active"])
                                .set(i64::from(size) - i64::try_from(idle).unwrap_or(0));
                            let mut out = Vec::new();
                            match TextEncoder::new().encode(&registry.gather(), &mut out) {
                                Ok(()) => plain(StatusCode::OK, out),
                                Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
                            }
                        }
                        "/healthz" => plain(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
                        "/readyz" if !state.kms.store.ping().await => plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            br#"{"ready":false,"reason":"database unreachable"}"#.to_vec(),
                        ),
                        "/readyz" if !state.kms.hsm_ready() => plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            br#"{"ready":false,"reason":"HSM unavailable"}"#.to_vec(),
                        ),
                        "/readyz" => plain(StatusCode::OK, br#"{"ready":true}"#.to_vec()),
                        _ => plain(StatusCode::NOT_FOUND, Vec::new()),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
