//! kms-k8s-plugin end to end: kms-core, kms-proxy and the plugin started for real, and a tonic
//! client of the same API definition calling it as kube-apiserver does — Status at start,
//! Encrypt of a 32-byte DEK, Decrypt with the returned key_id and annotations, a re-key in the
//! KMS, the KMS going down and coming back, and each credential method of the proxy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kms_k8s_plugin::api::{Client, DecryptRequest, EncryptRequest, EncryptResponse};
use kms_k8s_plugin::plugin::KEY_ANNOTATION;
use kms_tests::ckms::pinned_front;
use kms_tests::idp::Idp;
use kms_tests::proxy::binary;
use kms_tests::stack::{Stack, by_uid, create_request, field};
use kms_tests::{CertFiles, Proxy, ProxyCommand, Validity, tls_args};
use serde_json::{Value, json};
use tonic::Code;

/// A running plugin and a client of its socket.
struct Plugin {
    process: Proxy,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Plugin {
    async fn start(proxy: &Proxy, ca: &Path, key: &[&str], credential: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("kms.sock");
        let process = ProxyCommand::plugin()
            .args(["--socket", &socket.display().to_string()])
            .args(["--kms-url", &proxy.url("")])
            .args(["--kms-ca-file", &ca.display().to_string()])
            .args(["--admin-address", "127.0.0.1:0", "--health-ttl", "0.5"])
            .args(key)
            .args(credential)
            .spawn_as_is()?;
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket)?.permissions());
        ensure!(mode & 0o777 == 0o600, "socket mode {mode:o}");
        let client = Client::connect(socket).await?;
        Ok(Self {
            process,
            client,
            _dir: dir,
        })
    }

    /// Polls Status until its healthz satisfies `want` (10 s at most); the last answer.
    async fn status_until(
        &mut self,
        want: impl Fn(&str, &str) -> bool,
    ) -> Result<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.client.status().await?;
            ensure!(s.version == "v2", "version {}", s.version);
            if want(&s.healthz, &s.key_id) {
                return Ok((s.healthz, s.key_id));
            }
            if Instant::now() > deadline {
                bail!(
                    "Status stayed {:?} / {:?}:\n{}",
                    s.healthz,
                    s.key_id,
                    self.process.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn encrypt(&mut self, plaintext: &[u8]) -> Result<EncryptResponse, tonic::Status> {
        self.client
            .encrypt(EncryptRequest {
                plaintext: plaintext.to_vec(),
                uid: "req-enc".into(),
            })
            .await
    }

    async fn decrypt(&mut self, sealed: &EncryptResponse) -> Result<Vec<u8>, tonic::Status> {
        self.client
            .decrypt(DecryptRequest {
                ciphertext: sealed.ciphertext.clone(),
                uid: "req-dec".into(),
                key_id: sealed.key_id.clone(),
                annotations: sealed.annotations.clone(),
            })
            .await
            .map(|r| r.plaintext)
    }
}

fn uid_of(response: &Value) -> Result<String> {
    field(response, "UniqueIdentifier")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("no UniqueIdentifier")
}

async fn new_key(stack: &Stack, tag: &str) -> Result<String> {
    uid_of(
        &stack
            .ok(&create_request(256, &[tag], Some("2026-01-01T00:00:00Z")))
            .await?,
    )
}

async fn grant(stack: &Stack, action: &str, uid: &str, user: &str) -> Result<()> {
    let body = json!({"unique_identifier": uid, "user_id": user, "operation_types": ["encrypt", "decrypt"]});
    let (status, text) = stack
        .post_json(&stack.proxy, &format!("/access/{action}"), &body)
        .await?;
    ensure!(status == 200, "{action}: {status} {text}");
    Ok(())
}

/// `deploy/k8s-plugin/grant.sh` run by the owner with the real ckms.
fn grant_script(stack: &Stack, user: &str, tag: &str) -> Result<String> {
    let (_front, ckms) = pinned_front(stack, "grant-front")?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = binary("ckms");
    let path = format!(
        "{}:{}",
        bin.parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .arg(repo.join("deploy/k8s-plugin/grant.sh"))
        .args([user, tag])
        .env("CKMS_CONF", &ckms.conf)
        .env("HOME", ckms.dir.path())
        .env("PATH", path)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "grant.sh: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

fn code(result: Result<impl std::fmt::Debug, tonic::Status>) -> (Code, String) {
    match result {
        Ok(v) => (Code::Ok, format!("{v:?}")),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

/// API token; the key by tag: round trip, limits, re-key, the KMS down and back.
async fn api_token_and_rotation(stack: &mut Stack) -> Result<()> {
    let kek = new_key(stack, "k8s-kek").await?;
    let (token_uid, token) = stack.api_token().await?;
    let cert = stack.pki.server("token-proxy", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &format!("unix:{}", stack.socket.display())))
        .args(["--api-token-id", &token_uid])
        .spawn()?;
    ensure!(proxy.wait_ready().await, "{}", proxy.logs());
    let token_file = stack.pki.path("plugin.token");
    std::fs::write(&token_file, format!("{token}\n"))?;
    let mut plugin = Plugin::start(
        &proxy,
        &stack.pki.ca_file,
        &["--key-tag", "k8s-kek"],
        &["--api-token-file", &token_file.display().to_string()],
    )
    .await?;
    let (_, key_id) = plugin.status_until(|h, _| h == "ok").await?;
    assert_eq!(key_id, kek);

    let dek = [7u8; 32];
    let sealed = plugin.encrypt(&dek).await?;
    assert_eq!(sealed.key_id, kek);
    assert_eq!(sealed.ciphertext.len(), 12 + 32 + 16);
    assert_eq!(
        sealed.annotations.get(KEY_ANNOTATION),
        Some(&kek.clone().into_bytes())
    );
    assert_eq!(plugin.decrypt(&sealed).await?, dek);
    assert!(
        !plugin.process.logs().contains(&token),
        "the token is in the logs"
    );

    // Bad input: named, InvalidArgument, and the plugin stays up.
    let (c, m) = code(plugin.encrypt(&[]).await);
    assert_eq!(c, Code::InvalidArgument, "{m}");
    let (c, m) = code(plugin.encrypt(&[1u8; 2000]).await);
    assert_eq!(
        (c, m.contains("1 to 996")),
        (Code::InvalidArgument, true),
        "{m}"
    );
    let mut tampered = sealed.clone();
    tampered.ciphertext[20] ^= 1;
    let (c, m) = code(plugin.decrypt(&tampered).await);
    assert_eq!(c, Code::InvalidArgument, "{m}");
    let mut short = sealed.clone();
    short.ciphertext.truncate(10);
    assert_eq!(code(plugin.decrypt(&short).await).0, Code::InvalidArgument);
    let mut huge = sealed.clone();
    huge.annotations
        .insert("a.example.com/x".into(), vec![0; 40 * 1024]);
    assert_eq!(code(plugin.decrypt(&huge).await).0, Code::InvalidArgument);

    // Re-key in the KMS: Status shows the new key, new ciphertexts use it, old ones decrypt.
    let new = uid_of(&stack.ok(&by_uid("ReKey", &kek, vec![])).await?)?;
    ensure!(new != kek);
    let (_, key_id) = plugin.status_until(|h, k| h == "ok" && k == new).await?;
    assert_eq!(key_id, new);
    let fresh = plugin.encrypt(&dek).await?;
    assert_eq!(fresh.key_id, new);
    assert_eq!(plugin.decrypt(&sealed).await?, dek, "the old ciphertext");
    assert_eq!(plugin.decrypt(&fresh).await?, dek);

    // The KMS down: Status unhealthy (the last key kept), Encrypt Unavailable; back without
    // restarting the plugin.
    stack.core.signal(nix::sys::signal::Signal::SIGKILL)?;
    stack.core.wait_exit(Duration::from_secs(10))?;
    let (healthz, key_id) = plugin.status_until(|h, _| h != "ok").await?;
    assert_eq!(key_id, new, "{healthz}");
    assert!(healthz.contains("unavailable"), "{healthz}");
    let (c, m) = code(plugin.encrypt(&dek).await);
    assert_eq!(c, Code::Unavailable, "{m}");
    let metrics = reqwest::get(plugin.process.admin_url("/readyz")).await?;
    assert_eq!(metrics.status(), 503);
    stack.restart_core()?;
    plugin.status_until(|h, _| h == "ok").await?;
    assert_eq!(plugin.decrypt(&fresh).await?, dek);
    let metrics = reqwest::get(plugin.process.admin_url("/metrics"))
        .await?
        .text()
        .await?;
    for line in [
        "kms_plugin_calls_total{method=\"Encrypt\",outcome=\"ok\"}",
        "kms_plugin_calls_total{method=\"Encrypt\",outcome=\"Unavailable\"}",
        "kms_plugin_calls_total{method=\"Decrypt\",outcome=\"InvalidArgument\"}",
        "kms_plugin_call_duration_seconds_bucket{method=\"Status\"",
        "kms_plugin_last_healthy_timestamp_seconds",
        "kms_plugin_log_lines_dropped_total 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    Ok(())
}

/// A client certificate; the key by uid: no grant, a grant, a re-key followed through the
/// replacement link, the grant revoked.
async fn client_certificate_and_grants(stack: &Stack) -> Result<()> {
    let kek = new_key(stack, "k8s-kek-mtls").await?;
    let cert = stack.pki.server("mtls-proxy", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &format!("unix:{}", stack.socket.display())))
        .args([
            "--authority-cert-file",
            &stack.pki.ca_file.display().to_string(),
        ])
        .spawn()?;
    let identity: CertFiles = stack.pki.client("k8s-plugin", "kms-plugin")?;
    let me: Value = kms_tests::client::https_with_identity(&stack.pki.ca_pem, Some(&identity))?
        .get(proxy.url("/me"))
        .send()
        .await?
        .json()
        .await?;
    let user = me["user"].as_str().context("no user")?.to_owned();
    let mut plugin = Plugin::start(
        &proxy,
        &stack.pki.ca_file,
        &["--key-id", &kek],
        &[
            "--client-cert-file",
            &identity.cert.display().to_string(),
            "--client-key-file",
            &identity.key.display().to_string(),
        ],
    )
    .await?;
    let (healthz, _) = plugin.status_until(|h, _| h != "ok").await?;
    assert!(healthz.contains("denied"), "{healthz}");
    let (c, m) = code(plugin.encrypt(&[1; 32]).await);
    assert_eq!(c, Code::PermissionDenied, "{m}");

    // The deployment's grant script, as an operator runs it.
    let said = grant_script(stack, &user, "k8s-kek-mtls")?;
    assert!(said.contains(&kek), "{said}");
    let (_, key_id) = plugin.status_until(|h, _| h == "ok").await?;
    assert_eq!(key_id, kek);
    let sealed = plugin.encrypt(&[2; 32]).await?;
    // Re-keyed: the configured uid is followed to its replacement (grants move with it).
    let new = uid_of(&stack.ok(&by_uid("ReKey", &kek, vec![])).await?)?;
    plugin.status_until(|h, k| h == "ok" && k == new).await?;
    assert_eq!(plugin.encrypt(&[3; 32]).await?.key_id, new);
    assert_eq!(plugin.decrypt(&sealed).await?, [2; 32]);
    // The grant revoked: a clear PermissionDenied.
    grant(stack, "revoke", &new, &user).await?;
    let (c, m) = code(plugin.encrypt(&[4; 32]).await);
    assert_eq!(c, Code::PermissionDenied, "{m}");
    Ok(())
}

/// A JWT read from a file, read again when it changes (a projected ServiceAccount token).
async fn jwt_file(stack: &Stack) -> Result<()> {
    let idp = Idp::start()?;
    let kek = new_key(stack, "k8s-kek-jwt").await?;
    let cert = stack.pki.server("jwt-proxy", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &format!("unix:{}", stack.socket.display())))
        .args([
            "--jwt-issuer-uri",
            &idp.issuer,
            "--jwks-uri",
            &idp.jwks_uri(),
        ])
        .args(["--jwt-audience", "https://kms.local"])
        .spawn()?;
    ensure!(proxy.wait_ready().await, "{}", proxy.logs());
    grant(stack, "grant", &kek, "kms-machine").await?;
    let token_file: PathBuf = stack.pki.path("sa.token");
    std::fs::write(&token_file, "not-a-token")?;
    let mut plugin = Plugin::start(
        &proxy,
        &stack.pki.ca_file,
        &["--key-id", &kek],
        &["--jwt-file", &token_file.display().to_string()],
    )
    .await?;
    let (healthz, _) = plugin.status_until(|h, _| h != "ok").await?;
    assert!(healthz.contains("credential"), "{healthz}");
    let (c, m) = code(plugin.encrypt(&[1; 32]).await);
    assert_eq!(c, Code::Unauthenticated, "{m}");
    // The kubelet replaces the token: the next call uses it.
    std::fs::write(&token_file, idp.machine_token().await?)?;
    plugin.status_until(|h, _| h == "ok").await?;
    let sealed = plugin.encrypt(&[5; 32]).await?;
    assert_eq!(plugin.decrypt(&sealed).await?, [5; 32]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_apiserver_through_the_plugin() -> Result<()> {
    let mut stack = Stack::start(None).await?;
    api_token_and_rotation(&mut stack).await?;
    client_certificate_and_grants(&stack).await?;
    jwt_file(&stack).await?;
    Ok(())
}
