//! Starts the real `kms-proxy` binary, reads the addresses it logs, sends it signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Path of a workspace binary, built by `cargo build --workspace --bins` (the README's test
/// command does that first). A missing or stale binary is a loud failure, never a skip.
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/debug"));
    let path = target.join(name);
    assert!(
        path.is_file(),
        "{} not found: build it first with `cargo build --workspace --bins` (bash tests/run.sh does)",
        path.display()
    );
    path
}

/// The lines a child process printed, collected as they come.
pub type Logs = Arc<Mutex<Vec<String>>>;

/// Collects a child's stdout and stderr lines as they come (reader threads end with the child).
pub fn capture_output(child: &mut Child) -> Logs {
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let pipes = [
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut l) = logs.lock() {
                    l.push(line);
                }
            }
        });
    }
    logs
}

/// A command line for the proxy; `spawn` adds port 0 and a free admin port on loopback.
pub struct ProxyCommand {
    command: Command,
    cwd: tempfile::TempDir,
    marker: &'static str,
}

impl ProxyCommand {
    pub fn new() -> Self {
        Self::for_binary("kms-proxy", "kms-proxy listening on ")
    }

    /// kms-core, which logs `kms-core listening on unix:<path>`.
    pub fn core() -> Self {
        Self::for_binary("kms-core", "kms-core listening on ")
    }

    /// kms-k8s-plugin, which logs `kms-k8s-plugin listening on unix:<path>`.
    pub fn plugin() -> Self {
        Self::for_binary("kms-k8s-plugin", "kms-k8s-plugin listening on ")
    }

    fn for_binary(name: &str, marker: &'static str) -> Self {
        let cwd = tempfile::Builder::new()
            .prefix("kms-proxy-cwd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let mut command = Command::new(binary(name));
        // Only what the test says: no KMS_* from the developer's shell.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KMS_") {
                command.env_remove(&key);
            }
        }
        command
            .current_dir(cwd.path())
            .env("KMS_LOG", "info,access=info");
        Self {
            command,
            cwd,
            marker,
        }
    }

    /// The working directory the proxy runs in (where it looks for `.env`).
    pub fn cwd(&self) -> &Path {
        self.cwd.path()
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Self {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    /// Runs to completion (for configuration checks): status, stdout, stderr.
    pub fn output(mut self) -> Result<(ExitStatus, String, String)> {
        let out = self.command.stdin(Stdio::null()).output()?;
        Ok((
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Starts on 127.0.0.1 port 0 with admin on a free loopback port, and waits until listening.
    pub fn spawn(self) -> Result<Proxy> {
        self.args([
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--admin-address",
            "127.0.0.1:0",
        ])
        .spawn_as_is()
    }

    /// Starts with exactly the given arguments and waits until listening.
    pub fn spawn_as_is(mut self) -> Result<Proxy> {
        let mut child = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start kms-proxy")?;
        let logs = capture_output(&mut child);
        let mut proxy = Proxy {
            child,
            logs,
            addr: None,
            admin: None,
            _cwd: self.cwd,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // kms-core listens on a Unix socket: its marker line is enough.
        let unix = self.marker.starts_with("kms-core") || self.marker.starts_with("kms-k8s-plugin");
        let ready = |p: &Proxy| {
            p.admin.is_some() && (p.addr.is_some() || (unix && p.logs().contains(self.marker)))
        };
        while !ready(&proxy) {
            if let Some(status) = proxy.child.try_wait()? {
                bail!(
                    "{} exited with {status} before listening:\n{}",
                    self.marker.split(' ').next().unwrap_or_default(),
                    proxy.logs()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not log its addresses in 30 s:\n{}",
                    self.marker.split(' ').next().unwrap_or_default(),
                    proxy.logs()
                );
            }
            proxy.addr = proxy.logged_address(self.marker);
            proxy.admin = proxy.logged_address("admin listening on ");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(proxy)
    }
}

impl Default for ProxyCommand {
    fn default() -> Self {
        Self::new()
    }
}

/// A running proxy process; killed when dropped.
pub struct Proxy {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    addr: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    _cwd: tempfile::TempDir,
}

impl Proxy {
    /// The address in the first log line that contains `marker` followed by `scheme://addr`.
    pub fn logged_address(&self, marker: &str) -> Option<SocketAddr> {
        let logs = self.logs.lock().ok()?;
        logs.iter().find_map(|line| {
            let rest = &line[line.find(marker)? + marker.len()..];
            let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
            let addr: String = rest
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
                .collect();
            let addr: SocketAddr = addr.parse().ok()?;
            Some(addr)
        })
    }

    /// The client-facing address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// `https://localhost:<port>` (the test certificates name localhost).
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.admin
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/readyz` on the admin listener until it answers 200 (true) or 20 s pass.
    pub async fn wait_ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reqwest::get(self.admin_url("/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Everything the process has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, signal)?;
        Ok(())
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "kms-proxy still running after {timeout:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory of the process, from /proc.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc status")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
