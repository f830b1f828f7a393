//! The plugin's configuration, like the other binaries': defaults, a TOML file (`--config` or
//! `KMS_PLUGIN_CONFIG`), a `.env` file, `KMS_PLUGIN_*` environment variables and flags, merged
//! in that order (flags win), then checked into a [`Config`] before the socket is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "KMS_PLUGIN_";

/// kms-k8s-plugin: the Kubernetes KMS v2 plugin of kms-proxy / kms-core. Every flag can also
/// be set in the TOML file (same name, `_` for `-`), in `.env` or in the environment
/// (`KMS_PLUGIN_` and the name in capitals).
#[derive(Debug, Default, Parser, Serialize)]
#[command(name = "kms-k8s-plugin", version)]
pub struct Flags {
    /// TOML configuration file [env: KMS_PLUGIN_CONFIG]
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Unix socket kube-apiserver calls (mode 0600) [default: /var/run/kms-plugin/kms.sock]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// kms-proxy's URL, https://host:port
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_url: Option<String>,
    /// CA certificate(s) (PEM) that issued kms-proxy's certificate [default: the system's]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_ca_file: Option<PathBuf>,
    /// The key-encryption key, by uid
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key-encryption key, by tag (repeat: all of them); follows re-keys
    #[arg(long = "key-tag")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_tag: Vec<String>,
    /// Client certificate (PEM) for mTLS to kms-proxy
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// Its private key (PEM)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// File holding an API token of kms-proxy
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_token_file: Option<PathBuf>,
    /// File holding a JWT (a projected ServiceAccount token), read again when it changes
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_file: Option<PathBuf>,
    /// Metrics and health listener [default: 127.0.0.1:9801]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_address: Option<SocketAddr>,
    /// Seconds a successful round trip keeps Status healthy [default: 5]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_ttl: Option<f64>,
    /// Seconds each call to the KMS may take [default: 5]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_timeout: Option<f64>,
    /// `text` or `json` [default: text]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub socket: PathBuf,
    pub kms_url: String,
    pub kms_ca_file: Option<PathBuf>,
    pub key_id: Option<String>,
    pub key_tag: Vec<String>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub api_token_file: Option<PathBuf>,
    pub jwt_file: Option<PathBuf>,
    pub admin_address: SocketAddr,
    pub health_ttl: f64,
    pub kms_timeout: f64,
    pub log_format: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/var/run/kms-plugin/kms.sock"),
            kms_url: String::new(),
            kms_ca_file: None,
            key_id: None,
            key_tag: Vec::new(),
            client_cert_file: None,
            client_key_file: None,
            api_token_file: None,
            jwt_file: None,
            admin_address: SocketAddr::from(([127, 0, 0, 1], 9801)),
            health_ttl: 5.0,
            kms_timeout: 5.0,
            log_format: "text".into(),
        }
    }
}

/// How the plugin proves who it is to kms-proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ClientCertificate { cert: PathBuf, key: PathBuf },
    ApiToken(PathBuf),
    JwtFile(PathBuf),
}

/// The key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    Uid(String),
    Tags(Vec<String>),
}

impl KeySelector {
    /// As a KMIP `UniqueIdentifier` (tags: a JSON array).
    pub fn identifier(&self) -> String {
        match self {
            Self::Uid(uid) => uid.clone(),
            Self::Tags(tags) => serde_json::to_string(tags).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub kms_url: String,
    pub kms_ca_file: Option<PathBuf>,
    pub key: KeySelector,
    pub credential: Credential,
    pub admin_address: SocketAddr,
    pub health_ttl: Duration,
    pub kms_timeout: Duration,
    pub json_logs: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Source(String),
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn readable(key: &'static str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| invalid(key, format!("{}: {e}", path.display())))
}

fn seconds(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if !(0.05..=3600.0).contains(&value) {
        return Err(invalid(
            key,
            format!("{value}: give seconds from 0.05 to 3600"),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        if raw.kms_url.is_empty() {
            return Err(invalid("kms_url", "required: kms-proxy's https:// URL"));
        }
        if !raw.kms_url.starts_with("https://") {
            return Err(invalid(
                "kms_url",
                format!(
                    "{}: must be https:// (the plugin sends credentials)",
                    raw.kms_url
                ),
            ));
        }
        let key = match (raw.key_id, raw.key_tag.is_empty()) {
            (Some(uid), true) if !uid.is_empty() => KeySelector::Uid(uid),
            (None, false) => KeySelector::Tags(raw.key_tag),
            (Some(_), false) => return Err(invalid("key_id", "give key_id or key_tag, not both")),
            _ => return Err(invalid("key_id", "required: the key's uid (or key_tag)")),
        };
        let mut methods = Vec::new();
        match (raw.client_cert_file, raw.client_key_file) {
            (Some(cert), Some(key)) => {
                readable("client_cert_file", &cert)?;
                readable("client_key_file", &key)?;
                methods.push(Credential::ClientCertificate { cert, key });
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(invalid("client_key_file", "required with client_cert_file"));
            }
            (None, Some(_)) => {
                return Err(invalid("client_cert_file", "required with client_key_file"));
            }
        }
        if let Some(path) = raw.api_token_file {
            readable("api_token_file", &path)?;
            methods.push(Credential::ApiToken(path));
        }
        if let Some(path) = raw.jwt_file {
            readable("jwt_file", &path)?;
            methods.push(Credential::JwtFile(path));
        }
        let credential = match methods.len() {
            1 => methods.remove(0),
            0 => {
                return Err(invalid(
                    "client_cert_file",
                    "no credential: give client_cert_file and client_key_file, api_token_file, or jwt_file",
                ));
            }
            _ => {
                return Err(invalid(
                    "client_cert_file",
                    "several credentials: give exactly one of a client certificate, api_token_file, jwt_file",
                ));
            }
        };
        if let Some(ca) = &raw.kms_ca_file {
            readable("kms_ca_file", ca)?;
        }
        let json_logs = match raw.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => return Err(invalid("log_format", format!("{other}: text or json"))),
        };
        Ok(Self {
            socket: raw.socket,
            kms_url: raw.kms_url.trim_end_matches('/').to_owned(),
            kms_ca_file: raw.kms_ca_file,
            key,
            credential,
            admin_address: raw.admin_address,
            health_ttl: seconds("health_ttl", raw.health_ttl)?,
            kms_timeout: seconds("kms_timeout", raw.kms_timeout)?,
            json_logs,
        })
    }
}

/// `KMS_PLUGIN_*` pairs as configuration keys (`KMS_PLUGIN_KMS_URL` → `kms_url`); a list key
/// takes a comma-separated value.
fn variables(pairs: impl Iterator<Item = (String, String)>) -> BTreeMap<String, Value> {
    pairs
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(PREFIX)?.to_ascii_lowercase();
            if key == "config" {
                return None;
            }
            let value = if key == "key_tag" {
                Value::from(
                    value
                        .split(',')
                        .map(str::trim)
                        .map(String::from)
                        .collect::<Vec<_>>(),
                )
            } else {
                value
                    .parse::<Value>()
                    .unwrap_or_else(|_| Value::from(value))
            };
            Some((key, value))
        })
        .collect()
}

pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
    load_from(flags, std::env::vars(), Path::new(".env"))
}

/// [`load`] with the environment and `.env` given (for tests).
pub fn load_from(
    flags: &Flags,
    environment: impl Iterator<Item = (String, String)>,
    dot_env: &Path,
) -> Result<Config, ConfigError> {
    let environment: Vec<(String, String)> = environment.collect();
    let file = flags.config.clone().or_else(|| {
        environment
            .iter()
            .find(|(k, _)| k == "KMS_PLUGIN_CONFIG")
            .map(|(_, v)| PathBuf::from(v))
    });
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(invalid("config", format!("{} not found", file.display())));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    if dot_env.is_file() {
        let pairs = dotenvy::from_path_iter(dot_env)
            .map_err(|e| ConfigError::Source(format!("{}: {e}", dot_env.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Source(format!("{}: {e}", dot_env.display())))?;
        figment = figment.merge(Serialized::defaults(variables(pairs.into_iter())));
    }
    let raw: RawConfig = figment
        .merge(Serialized::defaults(variables(environment.into_iter())))
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| ConfigError::Source(e.to_string()))?;
    Config::try_from(raw)
}

#[cfg(test)]
mod tests;
