//! The proxy under attack (issue 11): header bombs, request smuggling shapes, chunked
//! trailers, absolute-form URIs, garbage and downgraded TLS, HTTP/2 rapid reset and
//! CONTINUATION floods. Each is sent raw over real TLS to a real kms-proxy in front of a
//! counting echo upstream: malformed requests never reach the upstream, floods end the
//! connection without growing the proxy, and the proxy keeps serving afterwards. (Slow and
//! idle clients: `limits.rs`; identity-header spellings over HTTP/1.1 and HTTP/2:
//! `forwarding.rs`.)

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use kms_tests::client::{https, raw_http1, split_response, tls_config, tls_connect};
use kms_tests::{Echo, Echoed, Proxy, ProxyCommand, TestPki, Validity, tls_args};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Target {
    pki: TestPki,
    echo: Echo,
    proxy: Proxy,
}

async fn target(name: &str) -> Result<Target> {
    let pki = TestPki::new(name)?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    Ok(Target { pki, echo, proxy })
}

impl Target {
    fn upstream_requests(&self) -> usize {
        self.echo.requests.load(Ordering::SeqCst)
    }

    /// The proxy still answers a normal request (and forwards it).
    async fn still_serves(&self) -> Result<()> {
        let before = self.upstream_requests();
        let seen: Echoed = https(&self.pki.ca_pem)?
            .get(self.proxy.url("/after"))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(seen.path == "/after" && self.upstream_requests() == before + 1);
        Ok(())
    }

    async fn raw(&self, request: &[u8]) -> Result<String> {
        raw_http1(&self.pki.ca_pem, self.proxy.port(), request).await
    }
}

fn status(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn header_bombs_and_smuggling_shapes_never_reach_the_upstream() -> Result<()> {
    let t = target("adversarial-h1").await?;
    let many = (0..2_000)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect::<String>();
    let huge = format!("X-Big: {}\r\n", "a".repeat(64 * 1024));
    let cases: Vec<(&str, String)> = vec![
        ("2,000 headers", format!("GET /bomb HTTP/1.1\r\nHost: l\r\n{many}\r\n")),
        ("a 64 KiB header", format!("GET /bomb HTTP/1.1\r\nHost: l\r\n{huge}\r\n")),
        (
            "two Content-Lengths",
            "POST /smuggle HTTP/1.1\r\nHost: l\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd".into(),
        ),
        (
            "obs-fold",
            "GET /fold HTTP/1.1\r\nHost: l\r\nX-KMS-User: admin\r\n mallory\r\n\r\n".into(),
        ),
        ("NUL in a header", "GET /nul HTTP/1.1\r\nHost: l\r\nX-A: a\0b\r\n\r\n".into()),
        (
            "Transfer-Encoding other than chunked",
            "POST /te HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: gzip, identity\r\n\r\nabc".into(),
        ),
        ("space before the colon", "GET /sp HTTP/1.1\r\nHost: l\r\nX-KMS-User : admin\r\n\r\n".into()),
    ];
    for (name, request) in &cases {
        let before = t.upstream_requests();
        let response = t.raw(request.as_bytes()).await?;
        let code = status(&response);
        assert!(
            code == 0 || (400..500).contains(&code),
            "{name}: answered {code}: {}",
            response.lines().next().unwrap_or_default()
        );
        assert_eq!(t.upstream_requests(), before, "{name} reached the upstream");
    }
    // A chunk size that is not hex: the head was already streamed, so the upstream sees the
    // request start and then its body fail; the client is told it is its fault (400), not
    // the upstream's (502).
    let bad_chunk = "POST /chunk HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
    let code = status(&t.raw(bad_chunk.as_bytes()).await?);
    assert!(code == 0 || code == 400, "bad chunk size: answered {code}");
    // Content-Length and Transfer-Encoding together: the proxy re-frames the request (chunked
    // wins, RFC 9112 6.3), forwards one request with its real body, and closes the connection,
    // so what hides behind the chunked end never becomes a request.
    let smuggle = "POST /front HTTP/1.1\r\nHost: l\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: l\r\n\r\n";
    let before = t.upstream_requests();
    let response = t.raw(smuggle.as_bytes()).await?;
    assert!(
        t.upstream_requests() <= before + 1,
        "CL+TE: a second request reached the upstream"
    );
    assert!(!response.contains("/smuggled"), "CL+TE: {response}");
    if status(&response) == 200 {
        let seen: Echoed = serde_json::from_str(split_response(&response).1)?;
        assert_eq!((seen.path.as_str(), seen.body_len), ("/front", 0));
        assert!(seen.all("content-length").iter().all(|v| *v == "0"));
    }
    t.still_serves().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn trailers_and_absolute_form_are_forwarded_sanely() -> Result<()> {
    let t = target("adversarial-forms").await?;
    // Chunked body with a trailer that tries to set the identity: the body arrives, the
    // trailer never becomes a header upstream.
    let chunked = "POST /trailer HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-KMS-User: mallory\r\n\r\n";
    let response = t.raw(chunked.as_bytes()).await?;
    assert_eq!(status(&response), 200, "{response}");
    let seen: Echoed = serde_json::from_str(split_response(&response).1)?;
    assert_eq!(seen.body_len, 3);
    assert_eq!(seen.all("x-kms-user"), vec!["admin"]);
    // Bare LF line ends: parsed leniently, forwarded as one well-formed request.
    let response = t
        .raw(b"GET /lf HTTP/1.1\nHost: l\nX-KMS-User: mallory\nConnection: close\n\n")
        .await?;
    if status(&response) == 200 {
        let seen: Echoed = serde_json::from_str(split_response(&response).1)?;
        assert_eq!(seen.path, "/lf");
        assert_eq!(seen.all("x-kms-user"), vec!["admin"]);
    } else {
        assert!((400..500).contains(&status(&response)), "{response}");
    }
    // Absolute-form: the path is forwarded, another host is not reached.
    let absolute = "GET http://evil.example:1/abs?q=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    let response = t.raw(absolute.as_bytes()).await?;
    let code = status(&response);
    if code == 200 {
        let seen: Echoed = serde_json::from_str(split_response(&response).1)?;
        assert!(seen.path.starts_with("/abs"), "{}", seen.path);
    } else {
        assert!((400..500).contains(&code), "{response}");
    }
    t.still_serves().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_downgraded_tls_are_refused() -> Result<()> {
    let t = target("adversarial-tls").await?;
    // Not TLS at all, then a TLS 1.0 ClientHello (version 0x0301, no 1.2/1.3 offered).
    let plain = b"GET / HTTP/1.1\r\nHost: l\r\n\r\n".to_vec();
    let mut tls10 = vec![
        0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x01,
    ];
    tls10.extend_from_slice(&[7u8; 32]);
    tls10.extend_from_slice(&[0x00, 0x00, 0x02, 0x00, 0x2f, 0x01, 0x00]);
    for (name, hello) in [
        ("plain HTTP", plain),
        ("TLS 1.0", tls10),
        ("noise", vec![0xff; 4096]),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", t.proxy.port())).await?;
        let _ = tcp.write_all(&hello).await;
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "{name}: the connection stayed open");
        assert!(
            !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
            "{name}: served"
        );
    }
    assert_eq!(t.upstream_requests(), 0);
    t.still_serves().await?;
    Ok(())
}

/// One HTTP/2 frame: 24-bit length, type, flags, stream id.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HPACK: :method GET, :scheme https, :path /, :authority localhost.
const REQUEST_BLOCK: &[u8] = b"\x82\x87\x84\x41\x09localhost";

/// Writes `frames` on a fresh h2 connection while reading; returns (bytes read, closed by
/// the server within the time limit).
async fn h2_flood(t: &Target, frames: Vec<u8>) -> Result<(usize, bool)> {
    let config = tls_config(&t.pki.ca_pem, &[&rustls::version::TLS13], &[b"h2"])?;
    let stream = tls_connect(config, t.proxy.port()).await?;
    let (mut read, mut write) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        let _ = write.write_all(PREFACE).await;
        let _ = write.write_all(&frame(0x4, 0, 0, &[])).await;
        for chunk in frames.chunks(64 * 1024) {
            if write.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = write.flush().await;
        write
    });
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    let closed = loop {
        match tokio::time::timeout_at(deadline.into(), read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => total += n,
            Err(_) => break false,
        }
    };
    writer.abort();
    Ok((total, closed))
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_rapid_reset_and_continuation_floods_end_the_connection() -> Result<()> {
    let t = target("adversarial-h2").await?;

    // Rapid reset: 20,000 streams opened and cancelled at once.
    let mut frames = Vec::new();
    for i in 0..20_000u32 {
        let id = 2 * i + 1;
        frames.extend(frame(0x1, 0x5, id, REQUEST_BLOCK));
        frames.extend(frame(0x3, 0, id, &8u32.to_be_bytes()));
    }
    let (_, closed) = h2_flood(&t, frames).await?;
    assert!(closed, "rapid reset: the connection stayed open");
    let forwarded = t.upstream_requests();
    assert!(
        forwarded < 2_000,
        "rapid reset: {forwarded} requests reached the upstream"
    );

    // CONTINUATION flood: a header block that never ends, 64 MiB of it.
    let mut frames = frame(0x1, 0x1, 1, REQUEST_BLOCK);
    let mut junk = Vec::new();
    while junk.len() < 16 * 1024 - 16 {
        junk.extend_from_slice(b"\x40\x03abc\x03xyz");
    }
    for _ in 0..4_096 {
        frames.extend(frame(0x9, 0, 1, &junk));
    }
    let before = t.upstream_requests();
    let (_, closed) = h2_flood(&t, frames).await?;
    assert!(closed, "CONTINUATION flood: the connection stayed open");
    assert_eq!(
        t.upstream_requests(),
        before,
        "a request of the flood was forwarded"
    );
    let peak = t.proxy.peak_rss_kib()? / 1024;
    eprintln!("kms-proxy peak RSS after the HTTP/2 floods: {peak} MiB");
    assert!(peak < 128, "kms-proxy grew to {peak} MiB");
    t.still_serves().await?;
    Ok(())
}
