//! Bounds on every input: slow headers, oversized headers and bodies, upstream connect and
//! response timeouts, idle keep-alive, connection limit. Errors are short JSON bodies.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kms_tests::client::{https, raw_http1, tls_config, tls_connect};
use kms_tests::{Echo, ProxyCommand, TestPki, Validity, metric, scrape, tls_args};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads until the peer closes; returns how long that took.
async fn time_to_close<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

async fn json_of(response: reqwest::Response) -> Result<(u16, serde_json::Value)> {
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    Ok((status, response.json().await?))
}

#[tokio::test(flavor = "multi_thread")]
async fn cuts_clients_that_send_headers_too_slowly() -> Result<()> {
    let pki = TestPki::new("slow")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--header-read-timeout", "1"])
        .spawn()?;
    let config = tls_config(&pki.ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let mut stream = tls_connect(config, proxy.port()).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await?;
    let closed = time_to_close(&mut stream, Duration::from_secs(10)).await;
    let closed = closed.context("a client stalled in its headers was not cut")?;
    assert!(
        closed >= Duration::from_millis(800),
        "cut too early: {closed:?}"
    );
    assert_eq!(echo.count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cuts_clients_that_send_nothing_after_the_handshake() -> Result<()> {
    let pki = TestPki::new("silent")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--header-read-timeout", "1", "--idle-timeout", "600"])
        .spawn()?;
    for alpn in [b"http/1.1".as_slice(), b"h2".as_slice()] {
        let config = tls_config(&pki.ca_pem, &[&rustls::version::TLS13], &[alpn])?;
        let mut stream = tls_connect(config, proxy.port()).await?;
        let closed = time_to_close(&mut stream, Duration::from_secs(10)).await;
        let closed = closed.context("a silent connection was never cut")?;
        assert!(
            closed >= Duration::from_millis(800),
            "cut too early: {closed:?}"
        );
    }
    // A client that never finishes the TLS handshake is cut too.
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--tls-handshake-timeout", "1"])
        .spawn()?;
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await?;
    let closed = time_to_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "a stalled TLS handshake was never cut");
    let metrics = scrape(&proxy).await?;
    assert_eq!(
        metric(
            &metrics,
            r#"kms_proxy_tls_handshake_failures_total{reason="timeout"}"#
        ),
        Some(1.0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rejects_oversized_headers_and_bodies_before_the_upstream() -> Result<()> {
    let pki = TestPki::new("size")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--max-body-size", "1024", "--max-header-size", "4096"])
        .spawn()?;
    let client = https(&pki.ca_pem)?;

    let (status, body) = json_of(
        client
            .get(proxy.url("/"))
            .header("x-big", "a".repeat(5000))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, body),
        (
            431,
            json!({"error": "request headers too large", "status": 431})
        )
    );

    let (status, body) = json_of(
        client
            .post(proxy.url("/"))
            .body(vec![0u8; 2048])
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, body),
        (
            413,
            json!({"error": "request body too large", "status": 413})
        )
    );
    assert_eq!(echo.count(), 0, "an oversized request reached the upstream");

    // Chunked: the size is only known while streaming.
    let chunks =
        futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![1u8; 512])));
    let (status, _) = json_of(
        client
            .post(proxy.url("/"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 413);

    // Exactly at the limit passes.
    let ok = client
        .post(proxy.url("/"))
        .body(vec![0u8; 1024])
        .send()
        .await?;
    assert_eq!(ok.status(), 200);

    // Far past hyper's own cap (twice max_header_size) hyper refuses the request itself and
    // closes the connection; the proxy keeps serving.
    let before = echo.count();
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Huge: {}\r\n\r\n",
        "b".repeat(64 * 1024)
    );
    let response = raw_http1(&pki.ca_pem, proxy.port(), raw.as_bytes()).await?;
    assert!(!response.contains("200 OK"), "{response}");
    assert_eq!(client.get(proxy.url("/")).send().await?.status(), 200);
    assert_eq!(
        echo.count(),
        before + 1,
        "the oversized request reached the upstream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_408_when_a_request_body_stalls() -> Result<()> {
    let pki = TestPki::new("stall")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--body-read-timeout", "1"])
        .spawn()?;
    let config = tls_config(&pki.ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let mut stream = tls_connect(config, proxy.port()).await?;
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
        .await?;
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut response)).await??;
    let text = String::from_utf8_lossy(&response[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.ends_with(r#"{"error":"request body not received in time","status":408}"#),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn maps_upstream_failures_to_502_and_504() -> Result<()> {
    let pki = TestPki::new("up")?;
    let cert = pki.server("server", Validity::Current)?;
    let client = https(&pki.ca_pem)?;

    // Nothing listens: connection refused, 502.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let closed_url = format!("http://{}", closed.local_addr()?);
    drop(closed);
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &closed_url))
        .spawn()?;
    let (status, body) = json_of(client.get(proxy.url("/")).send().await?).await?;
    assert_eq!(
        (status, body),
        (502, json!({"error": "upstream unavailable", "status": 502}))
    );
    let metrics = scrape(&proxy).await?;
    assert_eq!(
        metric(
            &metrics,
            r#"kms_proxy_upstream_errors_total{kind="connect"}"#
        ),
        Some(1.0)
    );

    // Accepts TCP but never completes TLS: the connect deadline gives 502.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_url = format!("https://localhost:{}", silent.local_addr()?.port());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &silent_url))
        .args([
            "--upstream-ca-cert-file",
            &pki.ca_file.display().to_string(),
        ])
        .args(["--upstream-connect-timeout", "0.5"])
        .spawn()?;
    let start = Instant::now();
    let (status, body) = json_of(client.get(proxy.url("/")).send().await?).await?;
    assert_eq!(
        (status, body),
        (502, json!({"error": "upstream unavailable", "status": 502}))
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    let metrics = scrape(&proxy).await?;
    assert_eq!(
        metric(
            &metrics,
            r#"kms_proxy_upstream_errors_total{kind="connect_timeout"}"#
        ),
        Some(1.0)
    );
    hold.abort();

    // Answers too slowly: 504.
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--upstream-timeout", "0.5"])
        .spawn()?;
    let (status, body) = json_of(client.get(proxy.url("/slow/3000")).send().await?).await?;
    assert_eq!(
        (status, body),
        (
            504,
            json!({"error": "upstream did not answer in time", "status": 504})
        )
    );
    let metrics = scrape(&proxy).await?;
    assert_eq!(
        metric(
            &metrics,
            r#"kms_proxy_upstream_errors_total{kind="timeout"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"kms_proxy_requests_total{auth_method="none",method="GET",outcome="upstream_error",status_class="5xx"}"#
        ),
        Some(1.0)
    );
    // Fast enough: fine.
    assert_eq!(
        client.get(proxy.url("/slow/10")).send().await?.status(),
        200
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn closes_idle_keep_alive_connections() -> Result<()> {
    let pki = TestPki::new("idle")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--idle-timeout", "1"])
        .spawn()?;
    let config = tls_config(&pki.ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let mut stream = tls_connect(config, proxy.port()).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The response is complete; now the connection idles until the proxy closes it.
    let closed = time_to_close(&mut stream, Duration::from_secs(10)).await;
    let closed = closed.context("idle keep-alive connection was never closed")?;
    assert!(
        closed >= Duration::from_millis(700),
        "closed too early: {closed:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_concurrent_connections() -> Result<()> {
    let pki = TestPki::new("maxconn")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--max-connections", "2"])
        .spawn()?;
    let config = tls_config(&pki.ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let first = tls_connect(config.clone(), proxy.port()).await?;
    let _second = tls_connect(config.clone(), proxy.port()).await?;
    let third = tokio::time::timeout(
        Duration::from_secs(5),
        tls_connect(config.clone(), proxy.port()),
    )
    .await?;
    assert!(
        third.is_err(),
        "a third connection was served with max_connections = 2"
    );
    let metrics = scrape(&proxy).await?;
    assert_eq!(
        metric(&metrics, "kms_proxy_connections_rejected_total"),
        Some(1.0)
    );
    assert_eq!(metric(&metrics, "kms_proxy_open_connections"), Some(2.0));
    drop(first);
    // Once one closes, a new connection is served again.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(mut s) = tls_connect(config.clone(), proxy.port()).await {
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await?;
            let mut buf = vec![0u8; 64];
            if let Ok(n) = s.read(&mut buf).await {
                ok = buf[..n].starts_with(b"HTTP/1.1 200");
            }
            if ok {
                break;
            }
        }
    }
    assert!(ok, "no connection accepted after one closed");
    Ok(())
}

/// A client connection read response by response (status line and body; Content-Length only).
struct Http1<S> {
    stream: S,
    buffered: Vec<u8>,
}

impl<S: AsyncReadExt + AsyncWriteExt + Unpin> Http1<S> {
    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    async fn response(&mut self) -> Result<(String, String)> {
        let deadline = Duration::from_secs(5);
        let head_end = loop {
            if let Some(at) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill(deadline).await?;
        };
        let head = String::from_utf8_lossy(&self.buffered[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .context("no content-length")?;
        while self.buffered.len() < head_end + length {
            self.fill(deadline).await?;
        }
        let body = String::from_utf8_lossy(&self.buffered[head_end..head_end + length]).to_string();
        self.buffered.drain(..head_end + length);
        Ok((head.lines().next().unwrap_or_default().to_owned(), body))
    }

    async fn fill(&mut self, deadline: Duration) -> Result<()> {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(deadline, self.stream.read(&mut chunk))
            .await
            .context("no response")??;
        anyhow::ensure!(n > 0, "connection closed by the proxy");
        self.buffered.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Waits until a gauge of the proxy reads `value`.
async fn gauge_reaches(proxy: &kms_tests::Proxy, series: &str, value: f64) -> Result<()> {
    let mut seen = None;
    for _ in 0..50 {
        seen = metric(&scrape(proxy).await?, series);
        if seen == Some(value) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{series} is {seen:?}, expected {value}")
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_http1_connections_park_and_serve_their_next_requests() -> Result<()> {
    let pki = TestPki::new("park")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let mut proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    let config = tls_config(&pki.ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let mut client = Http1 {
        stream: tls_connect(config, proxy.port()).await?,
        buffered: Vec::new(),
    };
    // Waiting for its first request, a connection holds no HTTP buffers either.
    gauge_reaches(&proxy, "kms_proxy_parked_connections", 1.0).await?;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    client.send(get("/first").as_bytes()).await?;
    let (status, body) = client.response().await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains(r#""path":"/first""#), "{body}");
    gauge_reaches(&proxy, "kms_proxy_parked_connections", 1.0).await?;

    // A request whose head arrives in two parts, the connection parked in between.
    let second = get("/second");
    let (start, rest) = second.split_at(20);
    client.send(start.as_bytes()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.send(rest.as_bytes()).await?;
    let (status, body) = client.response().await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains(r#""path":"/second""#), "{body}");

    // Two requests in one write: both answered, in order.
    client
        .send(format!("{}{}", get("/third"), get("/fourth")).as_bytes())
        .await?;
    for path in ["/third", "/fourth"] {
        let (status, body) = client.response().await?;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains(&format!(r#""path":"{path}""#)), "{body}");
    }

    // A request with a body, after the connection parked again.
    gauge_reaches(&proxy, "kms_proxy_parked_connections", 1.0).await?;
    client
        .send(b"POST /fifth HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        .await?;
    let (status, body) = client.response().await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains(r#""body_len":5"#), "{body}");
    assert_eq!(echo.count(), 5);
    let metrics = scrape(&proxy).await?;
    assert_eq!(metric(&metrics, "kms_proxy_open_connections"), Some(1.0));

    // A client that asks to close is answered, then the proxy closes.
    client
        .send(b"GET /last HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let (status, _) = client.response().await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let closed = time_to_close(&mut client.stream, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the proxy kept a connection the client asked to close"
    );
    gauge_reaches(&proxy, "kms_proxy_open_connections", 0.0).await?;

    // Parked connections close at once on SIGTERM.
    let config = tls_config(&pki.ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let mut idle = tls_connect(config, proxy.port()).await?;
    idle.write_all(get("/").as_bytes()).await?;
    gauge_reaches(&proxy, "kms_proxy_parked_connections", 1.0).await?;
    let start = Instant::now();
    proxy.signal(nix::sys::signal::Signal::SIGTERM)?;
    assert!(
        time_to_close(&mut idle, Duration::from_secs(5))
            .await
            .is_some()
    );
    assert_eq!(proxy.wait_exit(Duration::from_secs(5))?.code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_serves_http2_with_prior_knowledge_and_http1() -> Result<()> {
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(["--insecure-http", "--upstream", &echo.url])
        .spawn()?;
    let url = format!("http://127.0.0.1:{}/h2c", proxy.port());
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build()?;
    let r = h2.get(&url).send().await?;
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let h1 = reqwest::Client::builder().http1_only().build()?;
    for _ in 0..2 {
        let r = h1.get(&url).send().await?;
        assert_eq!(r.version(), http::Version::HTTP_11);
        assert_eq!(r.status(), 200);
    }
    assert_eq!(echo.count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_response_to_a_slow_reader_arrives_whole_and_the_connection_parks_after()
-> Result<()> {
    let pki = TestPki::new("slow-reader")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    let config = tls_config(&pki.ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let mut stream = tls_connect(config, proxy.port()).await?;
    let n = 24 * 1024 * 1024;
    stream
        .write_all(format!("GET /bytes/{n} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    // The client reads nothing for a while: the socket buffers fill and the proxy waits on the
    // client's window, well past the delay after which an idle connection parks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut raw = Vec::with_capacity(n + 64 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    while !raw.ends_with(b"\r\n0\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .context("response stalled")??;
        anyhow::ensure!(read > 0, "connection closed after {} bytes", raw.len());
        raw.extend_from_slice(&chunk[..read]);
    }
    let body_at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no head")?;
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    // Chunk-size lines are hex digits: every 'x' of the body is counted once.
    let xs = raw[body_at..].iter().filter(|&&b| b == b'x').count();
    assert_eq!(xs, n, "body truncated or padded");
    gauge_reaches(&proxy, "kms_proxy_parked_connections", 1.0).await?;
    let mut client = Http1 {
        stream,
        buffered: Vec::new(),
    };
    client
        .send(b"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let (status, body) = client.response().await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains(r#""path":"/after""#), "{body}");
    Ok(())
}
