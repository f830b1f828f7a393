//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process runs), `/readyz`
//! (the last Status round trip through the KMS succeeded).

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

fn plain(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

pub async fn serve(listener: TcpListener, metrics: Metrics) {
    while let Ok((stream, _)) = listener.accept().await {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let response = match request.uri().path() {
                        "/metrics" => {
                            let mut out = Vec::new();
                            match TextEncoder::new().encode(&metrics.registry.gather(), &mut out) {
                                Ok(()) => plain(StatusCode::OK, out),
                                Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
                            }
                        }
                        "/healthz" => plain(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
                        "/readyz" if metrics.is_healthy() => {
                            plain(StatusCode::OK, br#"{"ready":true}"#.to_vec())
                        }
                        "/readyz" => plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            br#"{"ready":false,"reason":"no recent round trip through the KMS"}"#
                                .to_vec(),
                        ),
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
