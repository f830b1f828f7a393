//! How the proxy uses its connections to the upstream: an HTTP/1 client connection keeps one
//! upstream connection for its requests, gives it to the others when it parks, and never sends
//! a request on an upstream connection the upstream has closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use kms_tests::{ProxyCommand, TestPki, Validity, metric, scrape, tls_args};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// When the test upstream closes a connection.
#[derive(Clone, Copy)]
enum Close {
    /// When the proxy does.
    Never,
    /// After this long without a request (without telling the proxy beforehand).
    WhenIdleFor(Duration),
    /// After each answer, which says `Connection: close`.
    AfterEachAnswer,
}

/// A bare HTTP/1.1 upstream: every answer's body is the number of the connection (from 1) the
/// request came on; a path that starts with `/slow` is answered after 300 ms, `/stall` after
/// 2 s.
struct Upstream {
    url: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    async fn start(close: Close) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let number = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(serve(stream, number, close));
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            connections,
            task,
        })
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads one request (its body too, when it has a length) and returns its request line;
/// `None` at the end.
async fn read_request(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffered[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buffered.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
                buffered.extend_from_slice(&chunk[..n]);
            }
            let line = head.lines().next().unwrap_or_default().to_owned();
            buffered.drain(..end + 4 + length);
            return Some(line);
        }
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffered.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(mut stream: TcpStream, number: usize, close: Close) {
    let mut buffered = Vec::new();
    loop {
        let request = match close {
            Close::WhenIdleFor(idle) => {
                tokio::time::timeout(idle, read_request(&mut stream, &mut buffered))
                    .await
                    .unwrap_or_default()
            }
            _ => read_request(&mut stream, &mut buffered).await,
        };
        let Some(line) = request else { return };
        if line.starts_with("get /slow") {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if line.starts_with("get /stall") {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let body = number.to_string();
        let connection = match close {
            Close::AfterEachAnswer => "Connection: close\r\n",
            _ => "",
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{connection}\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if matches!(close, Close::AfterEachAnswer) {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// One HTTP/1.1 client connection to the proxy (TLS 1.3), never more: every request goes on
/// it, one at a time. (A pooling client such as reqwest may open a second connection when a
/// request starts before the previous one's connection is back in its pool, which would
/// read here as the proxy opening a second upstream connection for one client connection.)
struct Client {
    sender: tokio::sync::Mutex<http1::SendRequest<Empty<Bytes>>>,
}

async fn http1_client(ca_pem: &str, proxy: &kms_tests::Proxy) -> Result<Client> {
    kms_tests::client::init_crypto();
    let config = kms_tests::client::tls_config(ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let stream = kms_tests::client::tls_connect(config, proxy.port()).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(Client {
        sender: tokio::sync::Mutex::new(sender),
    })
}

/// The status and body of a GET of `path` on the client's connection.
async fn get(client: &Client, path: &str) -> Result<(http::StatusCode, String)> {
    let exchange = async {
        let mut sender = client.sender.lock().await;
        sender.ready().await?;
        let request = http::Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(20), exchange).await?
}

/// The upstream connection number that answered, after checking the answer is a 200.
async fn answered_on(client: &Client, path: &str) -> Result<String> {
    let (status, body) = get(client, path).await?;
    anyhow::ensure!(status == 200, "{status}: {body}");
    Ok(body)
}

async fn parked(proxy: &kms_tests::Proxy, count: f64) -> Result<()> {
    for _ in 0..50 {
        if metric(&scrape(proxy).await?, "kms_proxy_parked_connections") == Some(count) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the proxy never reported {count} parked connections")
}

/// A proxy (TLS, its own test PKI) in front of an upstream that closes as `close` says.
async fn start(
    name: &str,
    close: Close,
    args: &[&str],
) -> Result<(TestPki, Upstream, kms_tests::Proxy)> {
    let pki = TestPki::new(name)?;
    let cert = pki.server("server", Validity::Current)?;
    let upstream = Upstream::start(close).await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &upstream.url))
        .args(args)
        .spawn()?;
    Ok((pki, upstream, proxy))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_connection_keeps_its_upstream_connection_and_hands_it_on_when_idle() -> Result<()>
{
    let (pki, upstream, proxy) = start("lane", Close::Never, &[]).await?;
    let url = "/";
    let first = http1_client(&pki.ca_pem, &proxy).await?;
    for _ in 0..3 {
        assert_eq!(answered_on(&first, url).await?, "1");
    }
    // Idle, the client connection parks; its next request still goes on the same connection.
    parked(&proxy, 1.0).await?;
    assert_eq!(answered_on(&first, url).await?, "1");
    // Parked again, it has handed the upstream connection on: a new client connection uses
    // it instead of opening one.
    parked(&proxy, 1.0).await?;
    let second = http1_client(&pki.ca_pem, &proxy).await?;
    assert_eq!(answered_on(&second, url).await?, "1");
    // Both busy at once: two upstream connections.
    let slow = "/slow";
    let (a, b) = tokio::join!(answered_on(&first, slow), answered_on(&second, slow));
    let mut numbers = [a?, b?];
    numbers.sort();
    assert_eq!(numbers, ["1", "2"]);
    // Then taking turns, they need no third.
    for _ in 0..3 {
        for client in [&first, &second] {
            let number = answered_on(client, url).await?;
            assert!(
                number == "1" || number == "2",
                "answered on connection {number}"
            );
        }
    }
    assert_eq!(upstream.connections(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_connection_closed_while_idle_is_never_used_again() -> Result<()> {
    let (pki, _upstream, proxy) = start(
        "lane-idle",
        Close::WhenIdleFor(Duration::from_millis(100)),
        &[],
    )
    .await?;
    let url = "/";
    let client = http1_client(&pki.ca_pem, &proxy).await?;
    for expected in ["1", "2", "3"] {
        assert_eq!(answered_on(&client, url).await?, expected);
        // The upstream closes the connection meanwhile, without a word.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // The same with a new client connection each time.
    for expected in ["4", "5"] {
        let client = http1_client(&pki.ca_pem, &proxy).await?;
        assert_eq!(answered_on(&client, url).await?, expected);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_closes_after_each_answer_gets_a_new_connection_each_time() -> Result<()> {
    let (pki, upstream, proxy) = start("lane-close", Close::AfterEachAnswer, &[]).await?;
    let client = http1_client(&pki.ca_pem, &proxy).await?;
    for expected in 1..=5 {
        let body = answered_on(&client, "/").await?;
        assert_eq!(body, expected.to_string());
    }
    assert_eq!(upstream.connections(), 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_given_up_on_never_reaches_the_next_request() -> Result<()> {
    let (pki, upstream, proxy) =
        start("lane-late", Close::Never, &["--upstream-timeout", "1"]).await?;
    let client = http1_client(&pki.ca_pem, &proxy).await?;
    let (stalled, _) = get(&client, "/stall").await?;
    assert_eq!(stalled, 504);
    // The same client connection's next requests: the connection that still owes the late
    // answer is closed, so they go on a new one, before and after that answer would come.
    assert_eq!(answered_on(&client, "/").await?, "2");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(answered_on(&client, "/").await?, "2");
    assert_eq!(upstream.connections(), 2);
    Ok(())
}
