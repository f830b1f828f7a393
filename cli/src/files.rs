//! Writing files that may hold secrets (exported keys, decrypted data, the configuration with
//! its tokens): the bytes go to a new file (`O_EXCL`, mode 0600) in the target's directory,
//! are synced, then moved into place. Nothing is ever written into a file that already
//! exists, a symlink planted at the target or at a temporary name is never followed, and a
//! reader never sees half a file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// What to do when the target exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (the old file is unlinked, never written to).
    Replace,
    /// Fail with `AlreadyExists`.
    Keep,
}

fn temporary_beside(path: &Path) -> io::Result<PathBuf> {
    let mut random = [0u8; 8];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| io::Error::other("no randomness available"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(path.with_file_name(format!(".{name}.{suffix}.tmp")))
}

/// A file being written beside its target: moved into place by [`Staged::commit`], removed
/// if dropped before.
pub struct Staged {
    file: File,
    staged: PathBuf,
    target: PathBuf,
    existing: Existing,
}

impl Staged {
    pub fn create(path: &Path, existing: Existing) -> io::Result<Self> {
        if existing == Existing::Keep && std::fs::symlink_metadata(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the file exists",
            ));
        }
        let staged = temporary_beside(path)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)?;
        Ok(Self {
            file,
            staged,
            target: path.to_owned(),
            existing,
        })
    }

    /// Syncs the file and moves it into place.
    pub fn commit(self) -> io::Result<()> {
        self.file.sync_all()?;
        match self.existing {
            Existing::Replace => std::fs::rename(&self.staged, &self.target),
            // A hard link never replaces: a file created meanwhile is not overwritten.
            Existing::Keep => std::fs::hard_link(&self.staged, &self.target),
        }
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After a rename there is nothing left to remove; after a hard link, the staged name.
        let _ = std::fs::remove_file(&self.staged);
    }
}

/// Writes `data` to `path` as described in the module documentation.
pub fn write_private(path: &Path, data: &[u8], existing: Existing) -> io::Result<()> {
    let mut staged = Staged::create(path, existing)?;
    staged.write_all(data)?;
    staged.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn never_writes_into_what_exists() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("ckms-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let target = dir.join("out");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious")?;
        std::os::unix::fs::symlink(&victim, &target)?;
        let refused = write_private(&target, b"secret", Existing::Keep);
        assert_eq!(
            refused.map_err(|e| e.kind()),
            Err(io::ErrorKind::AlreadyExists)
        );
        write_private(&target, b"secret", Existing::Replace)?;
        assert_eq!(
            std::fs::read(&victim)?,
            b"precious",
            "the symlink was followed"
        );
        assert_eq!(std::fs::read(&target)?, b"secret");
        let mode = std::fs::symlink_metadata(&target)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(&dir)?.count(),
            2,
            "a temporary file was left"
        );
        std::fs::remove_dir_all(&dir)
    }
}
