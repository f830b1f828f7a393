//! Operations: admin endpoints and metrics (checked by promtool), readiness following the
//! upstream, graceful drain on SIGTERM, certificate reload on SIGHUP and on file change,
//! access logs in JSON without secrets.

use std::time::Duration;

use anyhow::{Context, Result};
use kms_tests::client::{https, init_crypto, tls_config, tls_connect};
use kms_tests::{
    CertFiles, Echo, ProxyCommand, TestPki, Validity, metric, promtool_check, scrape, tls_args,
};
use nix::sys::signal::Signal;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn exports_valid_metrics_and_health() -> Result<()> {
    let pki = TestPki::new("metrics")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    let client = https(&pki.ca_pem)?;
    for _ in 0..3 {
        assert_eq!(client.get(proxy.url("/")).send().await?.status(), 200);
    }
    assert_eq!(
        client
            .post(proxy.url("/"))
            .body(vec![0u8; 70 * 1024 * 1024])
            .send()
            .await?
            .status(),
        413
    );
    // A failed handshake: plain bytes where TLS is expected.
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await?;
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await?;
    let _ = tcp.read(&mut [0u8; 64]).await;

    let text = scrape(&proxy).await?;
    promtool_check(&text)?;
    let ok = r#"kms_proxy_requests_total{auth_method="none",method="GET",outcome="forwarded",status_class="2xx"}"#;
    assert_eq!(metric(&text, ok), Some(3.0), "{text}");
    let rejected = r#"kms_proxy_requests_total{auth_method="none",method="POST",outcome="rejected",status_class="4xx"}"#;
    assert_eq!(metric(&text, rejected), Some(1.0));
    assert_eq!(
        metric(
            &text,
            r#"kms_proxy_request_duration_seconds_count{outcome="forwarded"}"#
        ),
        Some(3.0)
    );
    assert_eq!(metric(&text, "kms_proxy_requests_in_flight"), Some(0.0));
    assert!(metric(&text, "kms_proxy_open_connections").is_some());
    assert_eq!(
        metric(
            &text,
            r#"kms_proxy_tls_handshake_failures_total{reason="protocol"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"kms_proxy_upstream_errors_total{kind="connect"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, r#"kms_proxy_build_info{version="0.1.0"}"#),
        Some(1.0)
    );
    let der = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())?;
    let not_after = parsed.validity().not_after.timestamp() as f64;
    assert_eq!(
        metric(
            &text,
            "kms_proxy_server_certificate_not_after_timestamp_seconds"
        ),
        Some(not_after)
    );
    assert!(
        !text.contains("localhost") && !text.contains("admin"),
        "labels must be bounded"
    );

    assert_eq!(
        reqwest::get(proxy.admin_url("/healthz")).await?.status(),
        200
    );
    assert_eq!(
        reqwest::get(proxy.admin_url("/readyz")).await?.status(),
        200
    );
    assert_eq!(reqwest::get(proxy.admin_url("/nope")).await?.status(), 404);
    // The upstream goes away: not ready, still healthy.
    drop(echo);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        reqwest::get(proxy.admin_url("/readyz")).await?.status(),
        503
    );
    assert_eq!(
        reqwest::get(proxy.admin_url("/healthz")).await?.status(),
        200
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_a_unix_socket_upstream() -> Result<()> {
    let pki = TestPki::new("ready")?;
    let cert = pki.server("server", Validity::Current)?;
    let socket = pki.path("late.sock");
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &format!("unix:{}", socket.display())))
        .spawn()?;
    assert_eq!(
        reqwest::get(proxy.admin_url("/readyz")).await?.status(),
        503
    );
    let _echo = Echo::unix(socket).await?;
    assert_eq!(
        reqwest::get(proxy.admin_url("/readyz")).await?.status(),
        200
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_and_exits_zero() -> Result<()> {
    let pki = TestPki::new("drain")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let mut proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .spawn()?;
    let client = https(&pki.ca_pem)?;
    let url = proxy.url("/slow/1500");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.signal(Signal::SIGTERM)?;
    assert!(
        proxy.wait_for_log("no longer accepting", Duration::from_secs(5)),
        "{}",
        proxy.logs()
    );
    // New connections are refused while the old request finishes.
    assert!(
        tokio::net::TcpStream::connect(proxy.addr()).await.is_err(),
        "still accepting after SIGTERM"
    );
    let body = in_flight.await??;
    assert!(body.contains("\"path\":\"/slow/1500\""), "{body}");
    let status = proxy.wait_exit(Duration::from_secs(10))?;
    assert_eq!(status.code(), Some(0), "{}", proxy.logs());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_waiting_at_the_deadline() -> Result<()> {
    let pki = TestPki::new("deadline")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let mut proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--shutdown-timeout", "1"])
        .spawn()?;
    let client = https(&pki.ca_pem)?;
    let url = proxy.url("/slow/20000");
    let stuck = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = std::time::Instant::now();
    proxy.signal(Signal::SIGINT)?;
    let status = proxy.wait_exit(Duration::from_secs(10))?;
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        start.elapsed()
    );
    assert!(
        proxy.logs().contains("drain deadline reached"),
        "{}",
        proxy.logs()
    );
    assert!(stuck.await?.is_err());
    Ok(())
}

/// The leaf certificate a new TLS connection is served.
async fn served_cert(ca_pem: &str, port: u16) -> Result<Vec<u8>> {
    let config = tls_config(ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let stream = tls_connect(config, port).await?;
    let (_, conn) = stream.get_ref();
    Ok(conn.peer_certificates().context("no peer certificate")?[0].to_vec())
}

fn der_of(files: &CertFiles) -> Result<Vec<u8>> {
    Ok(CertificateDer::from_pem_slice(files.cert_pem.as_bytes())?.to_vec())
}

/// Writes `from`'s certificate and key over `to`'s files (key first, as a rotation would).
fn install(from: &CertFiles, to: &CertFiles) -> Result<()> {
    std::fs::copy(&from.key, &to.key)?;
    std::fs::copy(&from.cert, &to.cert)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_certificate_without_dropping_open_connections() -> Result<()> {
    init_crypto();
    let pki = TestPki::new("reload")?;
    let live = pki.server("live", Validity::Current)?;
    let original = der_of(&live)?;
    let next = pki.server("next", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&live, &echo.url))
        .args(["--cert-reload-interval", "3600"])
        .spawn()?;
    assert_eq!(served_cert(&pki.ca_pem, proxy.port()).await?, original);

    // An open keep-alive connection made before the reload.
    let config = tls_config(&pki.ca_pem, &[&rustls::version::TLS13], &[b"http/1.1"])?;
    let mut open = tls_connect(config, proxy.port()).await?;
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    open.write_all(request).await?;
    let mut buf = vec![0u8; 16 * 1024];
    assert!(open.read(&mut buf).await? > 0);

    install(&next, &live)?;
    proxy.signal(Signal::SIGHUP)?;
    assert!(
        proxy.wait_for_log("server certificate reloaded", Duration::from_secs(5)),
        "{}",
        proxy.logs()
    );
    assert_eq!(
        served_cert(&pki.ca_pem, proxy.port()).await?,
        der_of(&next)?
    );
    // The old connection still works, on its original certificate.
    open.write_all(request).await?;
    let n = open.read(&mut buf).await?;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(
        open.get_ref().1.peer_certificates().map(|c| c[0].to_vec()),
        Some(original)
    );

    // A broken certificate is refused and the current one kept.
    std::fs::write(&live.cert, "not a certificate")?;
    proxy.signal(Signal::SIGHUP)?;
    assert!(
        proxy.wait_for_log("reload failed", Duration::from_secs(5)),
        "{}",
        proxy.logs()
    );
    assert_eq!(
        served_cert(&pki.ca_pem, proxy.port()).await?,
        der_of(&next)?
    );
    let text = scrape(&proxy).await?;
    assert_eq!(
        metric(
            &text,
            r#"kms_proxy_certificate_reloads_total{result="failure"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"kms_proxy_certificate_reloads_total{result="success"}"#
        ),
        Some(1.0)
    );

    // An expired replacement is refused too.
    let expired = pki.server("expired", Validity::Expired)?;
    install(&expired, &live)?;
    proxy.signal(Signal::SIGHUP)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        served_cert(&pki.ca_pem, proxy.port()).await?,
        der_of(&next)?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_certificate_file_is_picked_up_without_a_signal() -> Result<()> {
    init_crypto();
    let pki = TestPki::new("watch")?;
    let live = pki.server("live", Validity::Current)?;
    let next = pki.server("next", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&live, &echo.url))
        .args(["--cert-reload-interval", "0.2"])
        .spawn()?;
    install(&next, &live)?;
    let wanted = der_of(&next)?;
    let mut served = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        served = served_cert(&pki.ca_pem, proxy.port()).await?;
        if served == wanted {
            break;
        }
    }
    assert_eq!(served, wanted, "{}", proxy.logs());
    Ok(())
}

/// `KMS_LOG` filters the access line like any other event: `access=warn` turns it off while
/// the rest of the info logs stay.
#[tokio::test(flavor = "multi_thread")]
async fn kms_log_access_warn_turns_the_access_line_off() -> Result<()> {
    let pki = TestPki::new("quiet")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let client = https(&pki.ca_pem)?;
    for (filter, wanted) in [("info,access=info", true), ("info,access=warn", false)] {
        let proxy = ProxyCommand::new()
            .args(tls_args(&cert, &echo.url))
            .args(["--log-format", "json"])
            .env("KMS_LOG", filter)
            .spawn()?;
        for _ in 0..5 {
            client
                .post(proxy.url("/kmip/2_1"))
                .body("{}")
                .send()
                .await?
                .error_for_status()?;
        }
        // Lines reach the log within milliseconds; a second is plenty.
        let seen = proxy.wait_for_log("\"target\":\"access\"", Duration::from_secs(1));
        assert_eq!(seen, wanted, "KMS_LOG={filter}: {}", proxy.logs());
        assert!(proxy.logs().contains("listening on"), "{}", proxy.logs());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_logs_have_the_fields_and_no_secrets() -> Result<()> {
    let pki = TestPki::new("logs")?;
    let cert = pki.server("server", Validity::Current)?;
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &echo.url))
        .args(["--log-format", "json"])
        .spawn()?;
    let client = https(&pki.ca_pem)?;
    client
        .post(proxy.url("/kmip/2_1?api_key=query-secret-123"))
        .bearer_auth("bearer-secret-456")
        .header("cookie", "session=cookie-secret-789")
        .body("key material 0xDEADBEEF")
        .send()
        .await?
        .error_for_status()?;
    assert!(
        proxy.wait_for_log("\"target\":\"access\"", Duration::from_secs(5)),
        "{}",
        proxy.logs()
    );
    let logs = proxy.logs();
    let access: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "access")
        .context("no JSON access line")?;
    assert_eq!(access["method"], "POST");
    assert_eq!(access["path"], "/kmip/2_1");
    assert_eq!(access["status"], 200);
    assert_eq!(access["user"], "admin");
    assert_eq!(access["auth_method"], "none");
    assert!(access["duration_ms"].as_f64().is_some());
    for secret in [
        "query-secret-123",
        "bearer-secret-456",
        "cookie-secret-789",
        "0xDEADBEEF",
    ] {
        assert!(!logs.contains(secret), "{secret} found in logs");
    }
    // Every line is JSON.
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    Ok(())
}
