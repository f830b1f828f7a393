//! Loading (or, in development mode, creating) the master key that wraps every key at rest.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::crypto::{MasterKey, random};

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "no master key: give --master-key-file (KMS_MASTER_KEY_FILE), or --dev to create one for development"
    )]
    Missing,
    #[error("cannot read the master key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the development master key {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("the master key file {0} must hold 32 bytes (raw, or base64 on one line)")]
    Format(String),
    #[error(
        "the master key file {0} is open to others or writable by its group; chmod 600 it (or 440 for a dedicated group, as a Kubernetes Secret with fsGroup mounts it)"
    )]
    Permissions(String),
}

fn parse(path: &Path, data: Zeroizing<Vec<u8>>) -> Result<MasterKey, MasterKeyError> {
    let bad = || MasterKeyError::Format(path.display().to_string());
    let bytes = if data.len() == 32 {
        data
    } else {
        let text = std::str::from_utf8(&data).map_err(|_| bad())?.trim();
        Zeroizing::new(B64.decode(text).map_err(|_| bad())?)
    };
    MasterKey::new(bytes).map_err(|_| bad())
}

/// The master key from `file`, or with `dev` the one under `data_dir` (created 0600 if absent).
pub fn load(file: Option<&Path>, dev: bool, data_dir: &Path) -> Result<MasterKey, MasterKeyError> {
    let path = match (file, dev) {
        (Some(path), _) => path.to_path_buf(),
        (None, true) => {
            let path = data_dir.join("dev-master.key");
            if !path.exists() {
                let create = |source| MasterKeyError::Create {
                    path: path.display().to_string(),
                    source,
                };
                crate::files::private_dir(data_dir).map_err(create)?;
                let key =
                    random(32).map_err(|_| MasterKeyError::Format(path.display().to_string()))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(create)?;
                f.write_all(B64.encode(&*key).as_bytes())
                    .and_then(|()| f.write_all(b"\n"))
                    .and_then(|()| f.sync_all())
                    .map_err(create)?;
                tracing::warn!(path = %path.display(), "created a development master key: keep it, or every stored key is lost");
            }
            path
        }
        (None, false) => return Err(MasterKeyError::Missing),
    };
    let read = |source| MasterKeyError::Read {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(&path).map_err(read)?;
    // Nothing for others, at most read for the group: a Kubernetes Secret mounted with an
    // fsGroup is 0440 root:<fsGroup>, and that group is the pod's own.
    if meta.permissions().mode() & 0o037 != 0 {
        return Err(MasterKeyError::Permissions(path.display().to_string()));
    }
    let data = Zeroizing::new(std::fs::read(&path).map_err(read)?);
    parse(&path, data)
}
