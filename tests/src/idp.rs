//! A real OpenID provider for the tests: `tests/idp/server.mjs` (the `oidc-provider` npm
//! package) run by Node on 127.0.0.1, with an RSA signing key the harness generates, so tests
//! can both ask the provider for tokens and sign their own variants with the same key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use crate::proxy::{Logs, capture_output};

/// An RSA key pair written as PEM files.
pub struct RsaKey {
    pub private_pem: String,
    pub public_pem: String,
    pub private_file: PathBuf,
    pub public_file: PathBuf,
}

/// Generates a 2048-bit RSA key with openssl (installed by `tests/run.sh`).
pub fn rsa_key(dir: &Path, stem: &str) -> Result<RsaKey> {
    let private_file = dir.join(format!("{stem}.key.pem"));
    let public_file = dir.join(format!("{stem}.pub.pem"));
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private_file)
        .stderr(Stdio::null())
        .status()
        .context(
            "openssl not found: install it with `apt-get install openssl` (bash tests/run.sh does)",
        )?;
    ensure!(status.success(), "openssl genpkey failed");
    let status = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private_file)
        .arg("-out")
        .arg(&public_file)
        .status()?;
    ensure!(status.success(), "openssl pkey -pubout failed");
    Ok(RsaKey {
        private_pem: std::fs::read_to_string(&private_file)?,
        public_pem: std::fs::read_to_string(&public_file)?,
        private_file,
        public_file,
    })
}

/// Signs `claims` with `key` under `header` (RS256 unless the header says otherwise).
pub fn sign(header: &Header, claims: &Value, key: &RsaKey) -> Result<String> {
    crate::client::init_crypto();
    let encoding = EncodingKey::from_rsa_pem(key.private_pem.as_bytes())?;
    Ok(jsonwebtoken::encode(header, claims, &encoding)?)
}

fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("idp")
}

/// A running `oidc-provider`; killed when dropped.
pub struct Idp {
    child: Child,
    logs: Logs,
    pub issuer: String,
    pub port: u16,
    pub kid: String,
    pub key: RsaKey,
    dir: tempfile::TempDir,
    generation: u32,
}

impl Idp {
    /// Starts the provider on a free port with a fresh signing key.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("kms-idp-").tempdir()?;
        let key = rsa_key(dir.path(), "idp-0")?;
        let (child, logs, port) = Self::spawn(0, &key, "idp-key-0")?;
        Ok(Self {
            child,
            logs,
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            kid: "idp-key-0".into(),
            key,
            dir,
            generation: 0,
        })
    }

    fn spawn(port: u16, key: &RsaKey, kid: &str) -> Result<(Child, Logs, u16)> {
        let dir = idp_dir();
        ensure!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test identity provider is not installed: run `npm ci --prefix tests/idp` (bash tests/run.sh does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .env("IDP_PORT", port.to_string())
            .env("IDP_KEY_FILE", &key.private_file)
            .env("IDP_KID", kid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("node not found: install Node.js (apt-get install nodejs)")?;
        let logs = capture_output(&mut child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = logs.lock().ok().and_then(|l| {
                l.iter().find_map(|line| {
                    line.strip_prefix("idp listening on http://127.0.0.1:")
                        .and_then(|p| p.trim().parse::<u16>().ok())
                })
            });
            if let Some(port) = found {
                return Ok((child, logs, port));
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the identity provider exited with {status}:\n{}",
                    logs.lock().map(|l| l.join("\n")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("the identity provider did not start in 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the provider (its port stays reserved for a restart).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the provider and starts it again on the same port (same issuer) with a new key.
    pub fn restart_with_new_key(&mut self) -> Result<()> {
        self.stop();
        self.generation += 1;
        let stem = format!("idp-{}", self.generation);
        let key = rsa_key(self.dir.path(), &stem)?;
        let kid = format!("idp-key-{}", self.generation);
        let mut last = None;
        // The port was ours a moment ago; retry briefly in case the kernel still holds it.
        for _ in 0..50 {
            match Self::spawn(self.port, &key, &kid) {
                Ok((child, logs, _)) => {
                    self.child = child;
                    self.logs = logs;
                    self.key = key;
                    self.kid = kid;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("cannot restart the identity provider")))
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// An access token (RS256 JWT, audience `https://kms.local`) for the machine client.
    pub async fn machine_token(&self) -> Result<String> {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth("kms-machine", Some("machine-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=kms")
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "token endpoint: {status} {body}");
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access_token in the token response")
    }

    /// A token signed with the provider's current key, as the provider would sign it.
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        sign(&header, claims, &self.key)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
