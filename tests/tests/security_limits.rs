//! Memory per request in kms-core is bounded (issue 11, item 6): a body of many tiny TTLV
//! nodes or deep nesting is refused before it is parsed, a body past the core's limit gets a
//! clear 413, and large bodies are processed a few at a time. Measured on the real core
//! process (peak resident size from /proc), through the real proxy and on the core's socket.

use anyhow::Result;
use kms_tests::stack::{Stack, by_uid, create_request, field, leaf};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

/// A Locate whose attributes are `size` bytes of tiny nodes.
fn node_bomb(size: usize) -> String {
    let node = r#"{"tag":"A","value":[]},"#;
    let mut body = String::with_capacity(size + 64);
    body.push_str(r#"{"tag":"Locate","value":[{"tag":"Attributes","value":["#);
    while body.len() + node.len() < size {
        body.push_str(node);
    }
    body.push_str(r#"{"tag":"A","value":[]}]}]}"#);
    body
}

/// Sends `request` on the core's socket while reading the answer, which may come (and the
/// connection close) before the body is sent: the answer's text.
async fn send_reading_early(socket: &std::path::Path, request: Vec<u8>) -> Result<String> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut read, mut write) = stream.into_split();
    // The write half stays open until the answer is read: a half-closed connection makes
    // the server drop the request.
    let (done, mut finished) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        let _ = (&mut finished).await;
        drop(write);
    });
    let mut answer = Vec::new();
    let _ = read.read_to_end(&mut answer).await;
    let _ = done.send(());
    let _ = writer.await;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn node_bombs_and_large_bodies_keep_the_core_small() -> Result<()> {
    let stack = Stack::start(None).await?;
    let client = kms_tests::client::https(&stack.pki.ca_pem)?;
    let kmip = stack.proxy.url("/kmip/2_1");

    // 64 MiB of tiny nodes: past the core's body limit, refused before it is read.
    let bomb = node_bomb(64 * MIB);
    let request = format!(
        "POST /kmip/2_1 HTTP/1.1\r\nHost: core\r\nX-KMS-User: mallory\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bomb}",
        bomb.len()
    );
    let answer = send_reading_early(&stack.socket, request.into_bytes()).await?;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("at most"), "{answer}");
    drop(bomb);

    // 30 MiB of tiny nodes (under the body limit) and a deep nesting: 422 before parsing.
    let bomb = node_bomb(30 * MIB);
    let response = client
        .post(&kmip)
        .header("content-type", "application/json")
        .body(bomb)
        .send()
        .await?;
    assert_eq!(response.status(), 422);
    let text = response.text().await?;
    assert!(text.contains("TTLV nodes"), "{text}");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let response = client.post(&kmip).body(deep).send().await?;
    assert_eq!(response.status(), 422);
    let peak = stack.core.peak_rss_kib()? / 1024;
    eprintln!("kms-core peak RSS after the node bombs: {peak} MiB");
    assert!(peak < 256, "kms-core reached {peak} MiB on node bombs");

    // 8 concurrent Encrypts of 16 MiB (the largest the core takes): all answered, bounded.
    let created = stack
        .ok(&create_request(256, &["big"], Some("2026-01-01T00:00:00Z")))
        .await?;
    let uid = field(&created, "UniqueIdentifier")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let hex = "A5".repeat(16 * MIB);
    let body = serde_json::to_vec(&by_uid(
        "Encrypt",
        &uid,
        vec![leaf("Data", "ByteString", json!(hex))],
    ))?;
    drop(hex);
    // Straight on the core's socket (the proxy streams bodies and holds none).
    let mut request = format!(
        "POST /kmip/2_1 HTTP/1.1\r\nHost: core\r\nX-KMS-User: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    drop(body);
    let mut sends = Vec::new();
    for _ in 0..8 {
        let socket = stack.socket.clone();
        let request = request.clone();
        sends.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let answer = send_reading_early(&socket, request).await?;
            eprintln!(
                "large Encrypt: {} in {:?}",
                answer.get(..12).unwrap_or_default(),
                started.elapsed()
            );
            anyhow::Ok(answer)
        }));
    }
    drop(request);
    for send in sends {
        let answer = send.await??;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "a large Encrypt failed: {}\n{}",
            answer.get(..200).unwrap_or(&answer),
            stack.core.logs()
        );
        assert!(answer.len() > 32 * MIB, "the ciphertext is missing");
    }
    let peak = stack.core.peak_rss_kib()? / 1024;
    eprintln!("kms-core peak RSS after 8 concurrent 16 MiB Encrypts: {peak} MiB");
    assert!(
        peak < 512,
        "kms-core reached {peak} MiB on 8 large Encrypts"
    );

    // One byte more than the limit through the proxy: the core's clear 413.
    let over = vec![b' '; 34 * MIB + 1];
    let response = client.post(&kmip).body(over).send().await?;
    let status = response.status();
    let text = response.text().await?;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("--max-body-size"), "{text}");
    Ok(())
}
