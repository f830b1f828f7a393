//! A trivial upstream for benchmarks: answers every request with 200 "ok" over HTTP/1.1
//! keep-alive, on the TCP address or Unix socket given as its only argument. With
//! `BENCH_API_KEY_HEX` set, a POST to `/kmip/2_1` answers a KMIP GetResponse holding that key,
//! so kms-proxy can load an API token key from it (tests/bench/auth.sh).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn ok(request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/kmip/2_1"
        && let Ok(hex) = std::env::var("BENCH_API_KEY_HEX")
    {
        let body = format!(
            r#"{{"tag":"GetResponse","value":[{{"tag":"SymmetricKey","value":[{{"tag":"KeyBlock","value":[{{"tag":"KeyValue","value":[{{"tag":"KeyMaterial","type":"ByteString","value":"{hex}"}}]}}]}}]}}]}}"#
        );
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn serve<I>(io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service_fn(ok))
            .await;
    });
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:19001".into());
    if let Some(path) = address.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)?;
        loop {
            serve(listener.accept().await?.0);
        }
    }
    let listener = tokio::net::TcpListener::bind(&address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        serve(stream);
    }
}
