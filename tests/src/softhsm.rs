//! A throwaway SoftHSM2 token per test: its own token directory through `SOFTHSM2_CONF`,
//! initialised with `softhsm2-util` (Debian package `softhsm2`, installed by tests/run.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const PIN: &str = "1234-user";

pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub label: String,
    /// The slot SoftHSM assigned to the token (a large number, not 0).
    pub slot: u64,
}

impl SoftHsm {
    pub fn new(label: &str) -> Result<Self> {
        ensure!(
            Path::new(MODULE).exists(),
            "{MODULE} not found: apt-get install softhsm2 (bash tests/run.sh does)"
        );
        let dir = tempfile::Builder::new().prefix("kms-softhsm-").tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens)?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                "5678-so",
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .context("softhsm2-util not found: apt-get install softhsm2")?;
        ensure!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        let slot = said
            .split("reassigned to slot ")
            .nth(1)
            .and_then(|rest| rest.trim().parse().ok())
            .with_context(|| format!("no slot in softhsm2-util's answer: {said}"))?;
        Ok(Self {
            dir,
            conf,
            label: label.to_owned(),
            slot,
        })
    }

    /// kms-core arguments for this token and a KEK label (the PIN goes in KMS_HSM_PIN).
    pub fn core_args(&self, kek_label: &str) -> Vec<String> {
        vec![
            "--hsm-module".into(),
            MODULE.into(),
            "--hsm-token-label".into(),
            self.label.clone(),
            "--hsm-kek-label".into(),
            kek_label.into(),
        ]
    }
}
