//! A trivial upstream for benchmarks: answers every request with 200 "ok" over HTTP/1.1
//! keep-alive, on the TCP address or Unix socket given as its only argument. With
//! `BENCH_API_KEY_HEX` set, it plays the KMS holding an API token key, as kms-proxy checks it
//! (tests/bench/auth.sh): `GET /access/list/<uid>` answers (as to the key's owner), a
//! GetAttributes on `/kmip/2_1` answers State Active, any other KMIP request a GetResponse
//! holding that key.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn ok(request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    static KEY_HEX: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(hex) = KEY_HEX.get_or_init(|| std::env::var("BENCH_API_KEY_HEX").ok()) else {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    };
    let path = request.uri().path().to_owned();
    if path.starts_with("/access/list/") {
        return Ok(Response::new(Full::new(Bytes::from_static(b"[]"))));
    }
    if path != "/kmip/2_1" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let answer = if body.starts_with(br#"{"tag":"GetAttributes""#) {
        r#"{"tag":"GetAttributesResponse","value":[{"tag":"State","type":"Enumeration","value":"Active"}]}"#.to_owned()
    } else {
        format!(
            r#"{{"tag":"GetResponse","value":[{{"tag":"SymmetricKey","value":[{{"tag":"KeyBlock","value":[{{"tag":"KeyValue","value":[{{"tag":"KeyMaterial","type":"ByteString","value":"{hex}"}}]}}]}}]}}]}}"#
        )
    };
    Ok(Response::new(Full::new(Bytes::from(answer))))
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
