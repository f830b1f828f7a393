//! Load generator for the benchmarks: POSTs one JSON body to `/kmip/2_1` from N keep-alive
//! connections for a while, on kms-core's Unix socket (as user `bench`) or through kms-proxy
//! over https, and prints requests/s and p50/p99 latency.
//!
//! usage: kms-load <unix:/path.sock | https://host:port> <body.json> <connections> <seconds> [ca.pem]
//! (KMS_LOAD_TOKEN: a bearer token to send over https)

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

async fn unix_worker(path: String, body: Bytes, until: Instant) -> Result<Vec<Duration>> {
    let stream = tokio::net::UnixStream::connect(&path).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let request = http::Request::post("/kmip/2_1")
            .header("host", "kms-core")
            .header("x-kms-user", "bench")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))?;
        let started = Instant::now();
        let response = sender.send_request(request).await?;
        let status = response.status();
        let _ = response.into_body().collect().await?;
        if !status.is_success() {
            bail!("status {status}");
        }
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

async fn https_worker(
    client: reqwest::Client,
    url: String,
    body: Bytes,
    until: Instant,
) -> Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Ok(token) = std::env::var("KMS_LOAD_TOKEN") {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let _ = response.bytes().await?;
        if !status.is_success() {
            bail!("status {status}");
        }
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        bail!(
            "usage: kms-load <unix:/path.sock | https://host:port> <body.json> <connections> <seconds> [ca.pem]"
        );
    }
    let body = Bytes::from(std::fs::read(&args[2]).context("body file")?);
    let connections: usize = args[3].parse()?;
    let seconds: f64 = args[4].parse()?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    if let Some(path) = args[1].strip_prefix("unix:") {
        for _ in 0..connections {
            tasks.push(tokio::spawn(unix_worker(
                path.to_owned(),
                body.clone(),
                until,
            )));
        }
    } else {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = std::fs::read(args.get(5).context("https needs the CA file")?)?;
        let url = format!("{}/kmip/2_1", args[1]);
        for _ in 0..connections {
            // One client per worker: one keep-alive TLS connection each, as for the socket.
            let client = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
                .http1_only()
                .pool_max_idle_per_host(1)
                .build()?;
            tasks.push(tokio::spawn(https_worker(
                client,
                url.clone(),
                body.clone(),
                until,
            )));
        }
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    println!(
        "{}",
        kms_tests::load_report(all, started.elapsed().as_secs_f64())
    );
    Ok(())
}
