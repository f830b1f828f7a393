//! TLS termination and forwarding: versions, ALPN, PEM and PKCS#12 certificates, Unix / TCP /
//! mTLS upstreams, streamed 64 MiB bodies, hop-by-hop and identity headers.

use std::time::Duration;

use anyhow::Result;
use kms_tests::client::{https, init_crypto, raw_http1, split_response, tls_config, tls_connect};
use kms_tests::echo::hex;
use kms_tests::{Echo, Echoed, ProxyCommand, TestPki, Validity, pki, tls_args};
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread")]
async fn forwards_over_tcp_with_default_identity_and_forwarding_headers() -> Result<()> {
    let pki = TestPki::new("fwd")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    let client = https(&pki.ca_pem)?;
    let seen: Echoed = client
        .post(proxy.url("/kmip/2_1?x=1"))
        .body("hello")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/kmip/2_1?x=1");
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.one("x-kms-user"), Some("admin"));
    assert_eq!(seen.one("x-kms-auth-method"), Some("none"));
    assert_eq!(seen.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen.one("host"),
        Some(format!("localhost:{}", proxy.port()).as_str())
    );
    assert_eq!(seen.body_len, 5);
    assert_eq!(seen.body_sha256, hex(&Sha256::digest(b"hello")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_to_a_unix_socket_with_a_configured_default_user() -> Result<()> {
    let pki = TestPki::new("unix")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::unix(pki.path("core.sock")).await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .env("KMS_DEFAULT_USERNAME", "alice@example.com")
        .spawn()?;
    let seen: Echoed = https(&pki.ca_pem)?
        .get(proxy.url("/version"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.one("x-kms-user"), Some("alice@example.com"));
    assert_eq!(echo.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_to_an_https_upstream_with_a_client_certificate() -> Result<()> {
    let pki = TestPki::new("mtls-up")?;
    let cert = pki.server("server", Validity::Current)?;
    let upstream_cert = pki.server("upstream", Validity::Current)?;
    let proxy_client = pki.client("proxy-client", "kms-proxy")?;
    let echo = Echo::tls(&upstream_cert, &pki.ca_file).await?;
    let mut args = tls_args(&cert, &echo.url);
    args.extend([
        "--upstream-ca-cert-file".into(),
        pki.ca_file.display().to_string(),
        "--upstream-client-cert-file".into(),
        proxy_client.cert.display().to_string(),
        "--upstream-client-key-file".into(),
        proxy_client.key.display().to_string(),
    ]);
    let proxy = ProxyCommand::new().args(&args).spawn()?;
    let client = https(&pki.ca_pem)?;
    let seen: Echoed = client.get(proxy.url("/me")).send().await?.json().await?;
    assert_eq!(seen.one("x-kms-user"), Some("admin"));

    // Without the client certificate the upstream refuses the handshake: 502, JSON body.
    let bare = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args([
            "--upstream-ca-cert-file",
            &pki.ca_file.display().to_string(),
        ])
        .spawn()?;
    let response = client.get(bare.url("/me")).send().await?;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["status"], 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("upstream")),
        "{body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "short body only: {body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn speaks_tls_12_and_13_with_alpn_h2_and_http11() -> Result<()> {
    init_crypto();
    let pki = TestPki::new("tls")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        for alpn in [b"h2".as_slice(), b"http/1.1".as_slice()] {
            let config = tls_config(&pki.ca_pem, &[version], &[alpn])?;
            let stream = tls_connect(config, proxy.port()).await?;
            let (_, conn) = stream.get_ref();
            assert_eq!(conn.protocol_version(), Some(expected));
            assert_eq!(conn.alpn_protocol(), Some(alpn));
        }
    }
    // Real requests over each HTTP version.
    let client = https(&pki.ca_pem)?;
    let r = client.get(proxy.url("/")).send().await?;
    assert_eq!(r.version(), http::Version::HTTP_2);
    let seen: Echoed = r.json().await?;
    assert_eq!(
        seen.one("host"),
        Some(format!("localhost:{}", proxy.port()).as_str())
    );
    assert_eq!(seen.one("x-kms-user"), Some("admin"));
    init_crypto();
    let h1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes())?])
        .http1_only()
        .build()?;
    let r = h1.get(proxy.url("/")).send().await?;
    assert_eq!(r.version(), http::Version::HTTP_11);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_a_pkcs12_certificate_and_refuses_a_wrong_password() -> Result<()> {
    let pki = TestPki::new("p12")?;
    let cert = pki.server("server", Validity::Current)?;
    let p12 = pki.path("server.p12");
    pki::pkcs12(&cert, &p12, "s3cret-pass")?;
    let echo = Echo::tcp().await?;
    let p12_arg = p12.display().to_string();
    let proxy = ProxyCommand::new()
        .args(["--https-p12-file", &p12_arg, "--upstream", &echo.url])
        .env("KMS_HTTPS_P12_PASSWORD", "s3cret-pass")
        .spawn()?;
    let seen: Echoed = https(&pki.ca_pem)?
        .get(proxy.url("/"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.one("x-kms-user"), Some("admin"));
    assert!(!proxy.logs().contains("s3cret-pass"), "password in logs");

    let (status, _, stderr) = ProxyCommand::new()
        .args([
            "--https-p12-file",
            &p12_arg,
            "--https-p12-password",
            "wrong",
            "--upstream",
            &echo.url,
        ])
        .args(["--port", "0", "--admin-address", "127.0.0.1:0"])
        .output()?;
    assert!(!status.success());
    assert!(stderr.contains("PKCS#12"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_to_start_without_a_usable_certificate() -> Result<()> {
    let pki = TestPki::new("nocert")?;
    let expired = pki.server("expired", Validity::Expired)?;
    let future = pki.server("future", Validity::NotYetValid)?;
    let other = pki.server("other", Validity::Current)?;
    let base = [
        "--port",
        "0",
        "--admin-address",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:1",
    ];

    let (status, _, stderr) = ProxyCommand::new().args(base).output()?;
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("tls_cert_file") && stderr.contains("insecure_http"),
        "{stderr}"
    );

    for (cert, key, needle) in [
        (&expired.cert, &expired.key, "not valid now"),
        (&future.cert, &future.key, "not valid now"),
        (&expired.cert, &other.key, "not valid now"),
        (&other.cert, &expired.key, "does not match"),
    ] {
        let (status, _, stderr) = ProxyCommand::new()
            .args(base)
            .args([
                "--tls-cert-file",
                &cert.display().to_string(),
                "--tls-key-file",
                &key.display().to_string(),
            ])
            .output()?;
        assert!(!status.success());
        assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_http_serves_plain_http_with_a_loud_warning() -> Result<()> {
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(["--insecure-http", "--upstream", &echo.url])
        .spawn()?;
    assert!(proxy.logs().contains("INSECURE"), "{}", proxy.logs());
    assert!(
        proxy
            .logs()
            .contains(&format!("listening on http://127.0.0.1:{}", proxy.port()))
    );
    let seen: Echoed = reqwest::get(format!("http://127.0.0.1:{}/", proxy.port()))
        .await?
        .json()
        .await?;
    assert_eq!(seen.one("x-forwarded-proto"), Some("http"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn strips_every_inbound_spelling_of_the_identity_headers() -> Result<()> {
    let pki = TestPki::new("strip")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    // Raw HTTP/1.1 so that every spelling reaches the proxy exactly as written.
    let spellings = [
        "X-KMS-User: mallory",
        "x-kms-user: mallory2",
        "X-Kms-User: mallory3",
        "X_KMS_USER: mallory4",
        "x_kms-user: mallory5",
        "X-KMS-USER: mallory6",
        "X-KMS-Auth-Method: mtls",
        "X_KMS_AUTH_METHOD: jwt",
        "X-Forwarded-For: 6.6.6.6",
        "X-Forwarded-Proto: http",
        "X_Forwarded_For: 6.6.6.7",
        "Forwarded: for=6.6.6.6",
        "X-Real-IP: 6.6.6.6",
    ];
    let request = format!(
        "GET /strip HTTP/1.1\r\nHost: localhost\r\n{}\r\nConnection: close\r\n\r\n",
        spellings.join("\r\n")
    );
    let response = raw_http1(&pki.ca_pem, proxy.port(), request.as_bytes()).await?;
    let (_, body) = split_response(&response);
    let seen: Echoed = serde_json::from_str(body)?;
    assert_eq!(seen.all("x-kms-user"), vec!["admin"], "{:?}", seen.headers);
    assert_eq!(seen.all("x-kms-auth-method"), vec!["none"]);
    assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["https"]);
    for (name, value) in &seen.headers {
        assert!(
            !value.contains("mallory") && !value.contains("6.6.6"),
            "{name}: {value} leaked"
        );
        assert!(!name.contains('_'), "{name} leaked");
    }
    assert!(seen.all("forwarded").is_empty() && seen.all("x-real-ip").is_empty());

    // Same over HTTP/2, where header names arrive lowercase.
    let client = https(&pki.ca_pem)?;
    let seen: Echoed = client
        .get(proxy.url("/h2"))
        .header("x-kms-user", "mallory")
        .header("x_kms_user", "mallory")
        .header("x-kms-auth-method", "api_token")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.all("x-kms-user"), vec!["admin"]);
    assert_eq!(seen.all("x-kms-auth-method"), vec!["none"]);
    assert!(seen.all("x_kms_user").is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn removes_hop_by_hop_headers_both_ways() -> Result<()> {
    let pki = TestPki::new("hop")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    let request = "GET /hop HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Secret-Hop\r\n\
                   X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
                   Upgrade: websocket\r\nX-Kept: yes\r\n\r\n";
    let response = raw_http1(&pki.ca_pem, proxy.port(), request.as_bytes()).await?;
    let (head, body) = split_response(&response);
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    let seen: Echoed = serde_json::from_str(body)?;
    for name in [
        "x-secret-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            seen.all(name).is_empty(),
            "{name} forwarded: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.one("x-kept"), Some("yes"));
    // The echo answers with Keep-Alive: timeout=5; the proxy must not relay it.
    assert!(
        !head.to_ascii_lowercase().contains("keep-alive: timeout"),
        "{head}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_64_mib_each_way_without_buffering() -> Result<()> {
    let pki = TestPki::new("big")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    let client = https(&pki.ca_pem)?;
    let size = 64 * 1024 * 1024;
    let chunk = bytes::Bytes::from(
        (0..1024 * 1024)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut hasher = Sha256::new();
    for _ in 0..64 {
        hasher.update(&chunk);
    }
    let expected = hex(&hasher.finalize());
    // A streamed (chunked) upload, so the proxy cannot know the size in advance.
    let stream =
        futures_util::stream::iter((0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let seen: Echoed = client
        .put(proxy.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(seen.body_len, size as u64);
    assert_eq!(seen.body_sha256, expected);

    let mut download = client
        .get(proxy.url(&format!("/bytes/{size}")))
        .send()
        .await?;
    let mut received = 0usize;
    while let Some(piece) = download.chunk().await? {
        received += piece.len();
    }
    assert_eq!(received, size);
    // Had either body been held whole, the proxy's peak memory would exceed 64 MiB.
    let peak = proxy.peak_rss_kib()?;
    assert!(
        peak < 48 * 1024,
        "kms-proxy peak RSS {peak} KiB: a body was buffered"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
