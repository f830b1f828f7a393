//! The README's stack command: `scripts/dev-stack.sh` starts kms-core and kms-proxy on embedded
//! defaults, and a KMIP request through https works at once.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kms_tests::stack::{create_request, field};

#[tokio::test(flavor = "multi_thread")]
async fn the_dev_stack_script_serves_kmip_over_tls() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("kms-stack-").tempdir()?;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut child = Command::new("bash")
        .arg(format!("{root}/scripts/dev-stack.sh"))
        .env("KMS_STACK_DIR", dir.path().join("data"))
        .env("KMS_STACK_PROFILE", "debug")
        .env("KMS_PORT", "0")
        .env("KMS_ADMIN_ADDRESS", "127.0.0.1:0")
        .env("KMS_CORE_ADMIN_ADDRESS", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let group = GroupGuard(i32::try_from(child.id())?);
    let lines = kms_tests::proxy::capture_output(&mut child);
    let deadline = Instant::now() + Duration::from_secs(300);
    let port = loop {
        let found = lines.lock().ok().and_then(|l| {
            l.iter().find_map(|line| {
                let rest = line.split("kms-proxy listening on https://").nth(1)?;
                rest.split_whitespace()
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse::<u16>()
                    .ok()
            })
        });
        if let Some(port) = found {
            break port;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stack did not start: {:?}",
            lines.lock().map(|l| l.join("\n"))
        );
        anyhow::ensure!(
            child.try_wait()?.is_none(),
            "the stack exited: {:?}",
            lines.lock().map(|l| l.join("\n"))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ca =
        std::fs::read_to_string(dir.path().join("data/dev-tls.crt")).context("dev certificate")?;
    let client = kms_tests::client::https(&ca)?;
    let response = client
        .post(format!("https://localhost:{port}/kmip/2_1"))
        .json(&create_request(256, &["first"], None))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await?;
    assert!(
        field(&body, "UniqueIdentifier")
            .and_then(|v| v.as_str())
            .is_some_and(|u| u.len() == 36),
        "{body}"
    );
    let key = std::fs::metadata(dir.path().join("data/dev-master.key"))?;
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    drop(group);
    let _ = child.wait();
    Ok(())
}

/// Stops the whole process group (the script and both binaries), also when the test fails.
struct GroupGuard(i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-self.0);
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
    }
}
