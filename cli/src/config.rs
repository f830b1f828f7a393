//! The client configuration file: `~/.cosmian/ckms.toml`, or the file named by `CKMS_CONF`
//! (also `CKMS_CONF_PATH`, the name newer reference releases use). Created with defaults on
//! first use. Both the classic layout (`[http_config]`) and the newer one
//! (`[kms_config.http_config]`) are read; unknown keys are errors naming the key and the file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// A secret string that never prints (Debug says `***`).
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Conf {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    pub authorize_url: String,
    pub token_url: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub server_url: String,
    #[serde(default)]
    pub accept_invalid_certs: bool,
    /// PEM of the one server certificate accepted (pinning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    #[serde(
        default,
        alias = "tls_client_pkcs12_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub ssl_client_pkcs12_path: Option<PathBuf>,
    #[serde(
        default,
        alias = "tls_client_pkcs12_password",
        skip_serializing_if = "Option::is_none"
    )]
    pub ssl_client_pkcs12_password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_conf: Option<OAuth2Conf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            server_url: "https://127.0.0.1:9998".into(),
            accept_invalid_certs: false,
            verified_cert: None,
            access_token: None,
            ssl_client_pkcs12_path: None,
            ssl_client_pkcs12_password: None,
            database_secret: None,
            oauth2_conf: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KmsConfig {
    http_config: HttpConfig,
}

/// The file as written: one of the two layouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLayout {
    http_config: Option<HttpConfig>,
    kms_config: Option<KmsConfig>,
}

/// The configuration in use and where it lives.
#[derive(Debug, Clone)]
pub struct Conf {
    pub path: PathBuf,
    pub http: HttpConfig,
    /// True when the file uses `[kms_config.http_config]`.
    nested: bool,
}

/// The file to use: `--conf`, else `CKMS_CONF`, else `CKMS_CONF_PATH`, else the default.
pub fn location(flag: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    for name in ["CKMS_CONF", "CKMS_CONF_PATH"] {
        if let Some(path) = std::env::var_os(name).filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(path));
        }
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            CliError::Config("HOME is not set: give the file with --conf or CKMS_CONF".into())
        })?;
    Ok(PathBuf::from(home).join(".cosmian").join("ckms.toml"))
}

impl Conf {
    /// Reads the file, creating it with defaults when it does not exist.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        if !path.exists() {
            let conf = Self {
                path: path.to_owned(),
                http: HttpConfig::default(),
                nested: false,
            };
            conf.save()?;
            eprintln!("ckms: created {} with default settings", path.display());
            return Ok(conf);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Config(format!("cannot read {}: {e}", path.display())))?;
        let layout: FileLayout = toml::from_str(&text).map_err(|e| {
            CliError::Config(format!(
                "{}: {}",
                path.display(),
                e.to_string().trim_end().replace('\n', " ")
            ))
        })?;
        let (http, nested) = match (layout.http_config, layout.kms_config) {
            (Some(http), None) => (http, false),
            (None, Some(kms)) => (kms.http_config, true),
            (Some(_), Some(_)) => {
                return Err(CliError::Config(format!(
                    "{}: give [http_config] or [kms_config.http_config], not both",
                    path.display()
                )));
            }
            (None, None) => {
                return Err(CliError::Config(format!(
                    "{}: missing [http_config] with server_url",
                    path.display()
                )));
            }
        };
        Ok(Self {
            path: path.to_owned(),
            http,
            nested,
        })
    }

    /// Writes the file (mode 0600: it may hold a token and passwords).
    pub fn save(&self) -> Result<(), CliError> {
        let http = toml::Value::try_from(&self.http)
            .map_err(|e| CliError::Config(format!("cannot serialize the configuration: {e}")))?;
        let mut root = toml::Table::new();
        if self.nested {
            let mut kms = toml::Table::new();
            kms.insert("http_config".into(), http);
            root.insert("kms_config".into(), toml::Value::Table(kms));
        } else {
            root.insert("http_config".into(), http);
        }
        let text = toml::to_string_pretty(&root)
            .map_err(|e| CliError::Config(format!("cannot serialize the configuration: {e}")))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        crate::files::write_private(&self.path, text.as_bytes(), crate::files::Existing::Replace)
            .map_err(|e| CliError::Config(format!("cannot write {}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_and_aliases() {
        let dir = std::env::temp_dir().join(format!("ckms-conf-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let classic = dir.join("classic.toml");
        std::fs::write(
            &classic,
            "[http_config]\nserver_url = \"https://kms:9998\"\ntls_client_pkcs12_path = \"a.p12\"\n",
        )
        .ok();
        let conf = Conf::load(&classic).ok();
        assert_eq!(
            conf.and_then(|c| c.http.ssl_client_pkcs12_path),
            Some(PathBuf::from("a.p12"))
        );
        let nested = dir.join("nested.toml");
        std::fs::write(
            &nested,
            "[kms_config.http_config]\nserver_url = \"https://kms:9998\"\n",
        )
        .ok();
        assert!(Conf::load(&nested).is_ok());
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[http_config]\nserver_url = \"x\"\nsever = 1\n").ok();
        let err = Conf::load(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("sever") && err.contains("bad.toml"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
