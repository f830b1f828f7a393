//! A throwaway PostgreSQL cluster per test: initdb in a temporary directory, a server on a free
//! 127.0.0.1 port, trust authentication for the `kms` role. Run as the `postgres` system user
//! when the tests run as root (PostgreSQL refuses root).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const INSTALL: &str = "PostgreSQL not found: install it with `apt-get install -y postgresql` (bash tests/run.sh does)";

fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context(INSTALL)?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    versions.sort();
    versions.pop().context(INSTALL)
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A command run as the postgres user when we are root.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub struct Postgres {
    _dir: tempfile::TempDir,
    child: Child,
    bin: PathBuf,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("kms-pg-").tempdir()?;
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(status.success(), "chown of the PostgreSQL directory failed");
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "kms", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _attempt in 0..5 {
            // A free port can be taken between our probe and the server's bind: retry then.
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut child = command(&bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args(["-c", "max_connections=200"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut up = false;
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !up {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let pg = Self {
                _dir: dir,
                child,
                bin,
                port,
            };
            pg.create_database("kms")?;
            return Ok(pg);
        }
        bail!("PostgreSQL did not start")
    }

    /// Creates a database (retrying while the server finishes starting).
    pub fn create_database(&self, name: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new(self.bin.join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "kms",
                    name,
                ])
                .output()?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("createdb failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://kms@127.0.0.1:{}/{database}", self.port)
    }

    /// `pg_dump` of a database, as text.
    pub fn dump(&self, database: &str) -> Result<String> {
        let out = Command::new(self.bin.join("pg_dump"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "kms",
                database,
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT = fast shutdown; the child is runuser or postgres itself.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
