//! The `ckms` binary as tests run it: one configuration file per test, commands run with it,
//! and a proxy with a known certificate in front of a stack's core.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::proxy::binary;
use crate::stack::Stack;
use crate::{CertFiles, Proxy, ProxyCommand, Validity, tls_args};

/// One configuration file and the commands run with it.
pub struct Ckms {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

impl Ckms {
    pub fn new(http_config: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("ckms.toml");
        std::fs::write(&conf, format!("[http_config]\n{http_config}\n"))?;
        Ok(Self { dir, conf })
    }

    /// A configuration pinning the certificate `cert` of the proxy at `url`.
    pub fn pinned(url: &str, cert: &CertFiles, extra: &str) -> Result<Self> {
        Self::new(&format!(
            "server_url = \"{url}\"\nverified_cert = \"\"\"\n{}\"\"\"\n{extra}",
            cert.cert_pem
        ))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("ckms"));
        command
            .args(args)
            .env("CKMS_CONF", &self.conf)
            .env("HOME", self.dir.path())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let out = self.command(args).output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Runs with `--json`; the command must succeed.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (ok, stdout, stderr) = self.run(&all)?;
        ensure!(ok, "ckms {args:?} failed: {stderr}");
        serde_json::from_str(&stdout).with_context(|| format!("not JSON: {stdout}"))
    }

    /// Runs the command and returns its peak resident memory in KiB (measured by Python's
    /// `getrusage`, an independent observer); the command must succeed.
    pub fn peak_rss_kib(&self, args: &[&str]) -> Result<u64> {
        let inner = self.command(args);
        let mut command = Command::new("python3");
        command
            .arg("-c")
            .arg("import resource,subprocess,sys\nr=subprocess.run(sys.argv[1:])\nprint(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\nsys.exit(r.returncode)")
            .arg(inner.get_program())
            .args(inner.get_args())
            .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        let out = command
            .output()
            .context("python3 (apt-get install python3)")?;
        ensure!(
            out.status.success(),
            "ckms {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or_default().trim().to_owned();
        last.parse()
            .with_context(|| format!("no peak RSS in {text:?}"))
    }

    /// The command must fail (non-zero exit); returns its stderr.
    pub fn fails(&self, args: &[&str]) -> Result<String> {
        let (ok, stdout, stderr) = self.run(args)?;
        ensure!(!ok, "ckms {args:?} succeeded: {stdout}");
        Ok(stderr)
    }
}

pub fn uid(value: &Value) -> String {
    value["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A proxy with a known certificate in front of the stack's core.
/// A proxy with a known certificate in front of the stack's core, and a configuration pinned
/// to it.
pub fn pinned_front(stack: &Stack, stem: &str) -> Result<(Proxy, Ckms)> {
    let (proxy, cert) = front(stack, stem, &[])?;
    let ckms = Ckms::pinned(&proxy.url(""), &cert, "")?;
    Ok((proxy, ckms))
}

pub fn front(stack: &Stack, stem: &str, extra: &[&str]) -> Result<(Proxy, CertFiles)> {
    let cert = stack.pki.server(stem, Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &format!("unix:{}", stack.socket.display())))
        .args(extra)
        .spawn()?;
    Ok((proxy, cert))
}
