//! Load generator for the Kubernetes KMS plugin benchmark: calls Encrypt (a 32-byte DEK) or
//! Decrypt (of one ciphertext made first) on the plugin's Unix socket from N gRPC connections
//! for a while, as kube-apiserver does, and prints requests/s and p50/p99 latency.
//!
//! usage: plugin-load <socket> <encrypt|decrypt> <connections> <seconds>

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kms_k8s_plugin::api::{Client, DecryptRequest, EncryptRequest};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        bail!("usage: plugin-load <socket> <encrypt|decrypt> <connections> <seconds>");
    }
    let socket = PathBuf::from(&args[1]);
    let decrypt = match args[2].as_str() {
        "encrypt" => false,
        "decrypt" => true,
        other => bail!("{other}: encrypt or decrypt"),
    };
    let connections: usize = args[3].parse()?;
    let until = Instant::now() + Duration::from_secs_f64(args[4].parse()?);
    let dek = EncryptRequest {
        plaintext: vec![7; 32],
        uid: "bench".into(),
    };
    let mut first = Client::connect(socket.clone()).await?;
    let sealed = first
        .encrypt(dek.clone())
        .await
        .context("a first Encrypt")?;
    let opened = DecryptRequest {
        ciphertext: sealed.ciphertext,
        uid: "bench".into(),
        key_id: sealed.key_id,
        annotations: sealed.annotations,
    };
    let mut tasks = Vec::new();
    for _ in 0..connections {
        // One client per worker: one HTTP/2 connection each.
        let mut client = Client::connect(socket.clone()).await?;
        let (dek, opened) = (dek.clone(), opened.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                if decrypt {
                    client.decrypt(opened.clone()).await?;
                } else {
                    client.encrypt(dek.clone()).await?;
                }
                latencies.push(started.elapsed());
            }
            Ok::<_, tonic::Status>(latencies)
        }));
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
