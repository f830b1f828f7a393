//! Client certificate authentication in kms-proxy: the user is the certificate's CN; a missing,
//! foreign, expired, not-yet-valid or revoked certificate never reaches the upstream; a bad CN
//! is a 401 with `WWW-Authenticate: Bearer`; never the default user once a method is set.

use std::time::Duration;

use anyhow::Result;
use kms_tests::{CertFiles, Echo, Echoed, Proxy, ProxyCommand, TestPki, Validity, tls_args};

fn client(pki: &TestPki, identity: Option<&CertFiles>) -> Result<reqwest::Client> {
    kms_tests::client::https_with_identity(&pki.ca_pem, identity)
}

fn start(pki: &TestPki, echo: &Echo, extra: &[&str]) -> Result<Proxy> {
    let server = pki.server("server", Validity::Current)?;
    ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .args(["--authority-cert-file", &pki.ca_file.display().to_string()])
        .args(extra)
        .spawn()
}

#[tokio::test(flavor = "multi_thread")]
async fn required_client_certificates() -> Result<()> {
    let pki = TestPki::new("mtls")?;
    let echo = Echo::tcp().await?;
    let proxy = start(&pki, &echo, &[])?;
    assert!(
        !proxy
            .logs()
            .contains("no authentication method is configured")
    );

    // A valid certificate: its CN is the user; inbound identity headers are still stripped.
    let alice = pki.client_with("alice", Some("alice@example.com"), Validity::Current)?;
    let seen: Echoed = client(&pki, Some(&alice))?
        .get(proxy.url("/"))
        .header("x-kms-user", "mallory")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.all("x-kms-user"), vec!["alice@example.com"]);
    assert_eq!(seen.one("x-kms-auth-method"), Some("mtls"));

    // No certificate, another CA, expired, not yet valid: the handshake fails, nothing upstream.
    let other = TestPki::new("other")?;
    let foreign = other.client_with("foreign", Some("alice@example.com"), Validity::Current)?;
    let expired = pki.client_with("expired", Some("alice@example.com"), Validity::Expired)?;
    let future = pki.client_with("future", Some("alice@example.com"), Validity::NotYetValid)?;
    let before = echo.count();
    for (name, id) in [
        ("none", None),
        ("foreign CA", Some(&foreign)),
        ("expired", Some(&expired)),
        ("not yet valid", Some(&future)),
    ] {
        let result = client(&pki, id)?.get(proxy.url("/")).send().await;
        assert!(
            result.is_err(),
            "{name}: a request was served: {:?}",
            result.map(|r| r.status())
        );
    }
    assert_eq!(
        echo.count(),
        before,
        "a refused client reached the upstream"
    );

    // Verified chain but no usable user name: 401, never the default user.
    for (stem, cn) in [("empty", Some("")), ("star", Some("*")), ("nocn", None)] {
        let id = pki.client_with(stem, cn, Validity::Current)?;
        let r = client(&pki, Some(&id))?.get(proxy.url("/")).send().await?;
        assert_eq!(r.status(), 401, "{stem}");
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        let body: serde_json::Value = r.json().await?;
        assert_eq!(body["status"], 401);
    }
    assert_eq!(echo.count(), before);
    let metrics = kms_tests::scrape(&proxy).await?;
    let refused = r#"kms_proxy_requests_total{auth_method="mtls",method="GET",outcome="unauthenticated",status_class="4xx"}"#;
    assert_eq!(kms_tests::metric(&metrics, refused), Some(3.0), "{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_client_certificates_still_fail_closed() -> Result<()> {
    let pki = TestPki::new("optional")?;
    let echo = Echo::tcp().await?;
    let proxy = start(&pki, &echo, &["--client-cert", "optional"])?;
    let r = client(&pki, None)?.get(proxy.url("/")).send().await?;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(echo.count(), 0);
    let bob = pki.client_with("bob", Some("bob"), Validity::Current)?;
    let seen: Echoed = client(&pki, Some(&bob))?
        .get(proxy.url("/"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.one("x-kms-user"), Some("bob"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn force_default_username_and_crl() -> Result<()> {
    let pki = TestPki::new("force")?;
    let echo = Echo::tcp().await?;
    let alice = pki.client_with("alice", Some("alice"), Validity::Current)?;
    let revoked = pki.client_with("revoked", Some("eve"), Validity::Current)?;
    let crl = pki.crl("ca", &[revoked.serial])?;
    let crl_arg = crl.display().to_string();
    let proxy = start(
        &pki,
        &echo,
        &["--force-default-username", "--crl-file", &crl_arg],
    )?;
    let seen: Echoed = client(&pki, Some(&alice))?
        .get(proxy.url("/"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        seen.one("x-kms-user"),
        Some("admin"),
        "authenticated, then mapped to the default user"
    );
    assert_eq!(seen.one("x-kms-auth-method"), Some("mtls"));
    let before = echo.count();
    assert!(
        client(&pki, Some(&revoked))?
            .get(proxy.url("/"))
            .send()
            .await
            .is_err(),
        "a revoked certificate was accepted"
    );
    assert_eq!(echo.count(), before);
    // A CRL without an authority, or mTLS without TLS, is a configuration error.
    let (status, _, stderr) = ProxyCommand::new()
        .args([
            "--insecure-http",
            "--upstream",
            &echo.url,
            "--crl-file",
            &crl_arg,
        ])
        .output()?;
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("crl_file"), "{stderr}");
    let (status, _, stderr) = ProxyCommand::new()
        .args([
            "--insecure-http",
            "--upstream",
            &echo.url,
            "--authority-cert-file",
            &pki.ca_file.display().to_string(),
        ])
        .output()?;
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("authority_cert_file"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_ca_and_crl_reload_without_restart() -> Result<()> {
    let pki = TestPki::new("rotate-old")?;
    let next = TestPki::new("rotate-new")?;
    let echo = Echo::tcp().await?;
    let bundle = pki.path("clients-ca.pem");
    std::fs::write(&bundle, &pki.ca_pem)?;
    let crl = pki.path("clients.crl");
    std::fs::copy(pki.crl("empty", &[])?, &crl)?;
    let server = pki.server("server", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .args(["--authority-cert-file", &bundle.display().to_string()])
        .args(["--crl-file", &crl.display().to_string()])
        .args(["--cert-reload-interval", "0.2"])
        .spawn()?;
    let old_user = pki.client_with("old", Some("old-ca-user"), Validity::Current)?;
    let new_user = next.client_with("new", Some("new-ca-user"), Validity::Current)?;
    let get = |id: &CertFiles| -> Result<reqwest::Client> { client(&pki, Some(id)) };
    assert!(get(&old_user)?.get(proxy.url("/")).send().await.is_ok());
    assert!(get(&new_user)?.get(proxy.url("/")).send().await.is_err());

    // Rotation, step 1: both CAs in the bundle and a CRL of each (with CRLs configured, a
    // certificate whose CA has no CRL is refused). Files are written aside, then renamed, as a
    // Kubernetes Secret update does.
    let crls = format!(
        "{}{}",
        std::fs::read_to_string(pki.crl("old-empty", &[])?)?,
        std::fs::read_to_string(next.crl("new-empty", &[])?)?
    );
    std::fs::write(pki.path("clients.crl.new"), crls)?;
    std::fs::rename(pki.path("clients.crl.new"), &crl)?;
    let staged = pki.path("clients-ca.pem.new");
    std::fs::write(&staged, format!("{}{}", pki.ca_pem, next.ca_pem))?;
    std::fs::rename(&staged, &bundle)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&new_user)?.get(proxy.url("/")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new CA never applied: {}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(proxy.logs().contains("client CA bundle and CRLs reloaded"));
    let seen: Echoed = get(&new_user)?
        .get(proxy.url("/"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.one("x-kms-user"), Some("new-ca-user"));
    assert!(get(&old_user)?.get(proxy.url("/")).send().await.is_ok());

    // A new CRL revoking the old user applies without a restart too.
    let crls = format!(
        "{}{}",
        std::fs::read_to_string(pki.crl("revoking", &[old_user.serial])?)?,
        std::fs::read_to_string(next.crl("new-empty-2", &[])?)?
    );
    std::fs::write(pki.path("clients.crl.new"), crls)?;
    std::fs::rename(pki.path("clients.crl.new"), &crl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&old_user)?.get(proxy.url("/")).send().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new CRL never applied: {}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken bundle is refused and the current trust kept.
    std::fs::write(pki.path("broken.new"), "not a certificate")?;
    std::fs::rename(pki.path("broken.new"), &bundle)?;
    assert!(
        proxy.wait_for_log("client CA reload failed", Duration::from_secs(10)),
        "{}",
        proxy.logs()
    );
    assert!(get(&new_user)?.get(proxy.url("/")).send().await.is_ok());
    Ok(())
}
