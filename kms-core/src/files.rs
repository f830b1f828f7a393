//! Files that hold secrets or give access, created with the right modes whatever the umask:
//! the data directory 0700, the SQLite database and its `-wal`/`-shm` files 0600, and the Unix
//! socket, which never exists at its path with wider permissions than 0660 (it is bound inside
//! a private directory, restricted, then moved into place).

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Creates `dir` (and its parents) with mode 0700, and narrows an existing `dir` to 0700 when
/// it is wider. A directory this process may not change (a volume mount owned by root) is
/// left as it is with a warning: the files inside are still 0600.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        if let Err(e) = std::fs::set_permissions(dir, Permissions::from_mode(0o700)) {
            tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), error = %e, "cannot narrow the data directory to 0700");
        }
    }
    Ok(())
}

/// The file path of a `sqlite://PATH[?options]` URL.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Makes the database file exist with mode 0600 before SQLite opens it (SQLite gives its
/// `-wal` and `-shm` files the database file's mode), and narrows existing ones to 0600.
pub fn private_database(db: &Path) -> io::Result<()> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        if file.exists() {
            std::fs::set_permissions(&file, Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Binds the Unix socket at `path` with mode 0660: bound in a new 0700 directory beside it,
/// restricted there, then renamed into place, so no process can connect through wider
/// permissions at any moment.
pub fn bind_private_socket(path: &Path) -> io::Result<UnixListener> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let staging = dir.join(format!(".kms-core-socket.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    DirBuilder::new().mode(0o700).create(&staging)?;
    let result = (|| {
        let temporary = staging.join("s");
        let listener = UnixListener::bind(&temporary)?;
        std::fs::set_permissions(&temporary, Permissions::from_mode(0o660))?;
        std::fs::rename(&temporary, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}
