//! kms-core configuration, like the proxy's: defaults, a TOML file (`--config`, or
//! `KMS_CORE_CONFIG`), a `.env` file, `KMS_*` environment variables and flags, merged with
//! figment in that order (flags win), then validated into [`Config`] before anything is
//! opened or bound. The reference's names work where it has them (`database_type`,
//! `database_url`, `sqlite_path`, `root_data_path`).

mod flags;
mod sources;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use flags::{CoreCommand, Flags};
pub use sources::{ENV_NAMES, reference_only_variables};

/// A configuration problem found before start; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Source(String),
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        let lines: Vec<String> = e
            .into_iter()
            .map(|e| {
                let key = e.path.join(".");
                let variable = ENV_NAMES.iter().find(|(_, k)| *k == key).map(|(v, _)| *v);
                let from = e
                    .metadata
                    .as_ref()
                    .map(|m| match (&m.source, variable) {
                        (Some(source), _) => format!(" (from {source})"),
                        (None, Some(variable)) if m.name != "default" => {
                            format!(" (from {}: {variable})", m.name)
                        }
                        (None, _) => format!(" (from {})", m.name),
                    })
                    .unwrap_or_default();
                match &e.kind {
                    figment::error::Kind::UnknownField(field, _) => {
                        format!(
                            "unknown key `{field}`{from}; see kms-core --help for the valid keys"
                        )
                    }
                    kind if key.is_empty() => format!("{kind}{from}"),
                    kind => format!("invalid value for `{key}`: {kind}{from}"),
                }
            })
            .collect();
        Self::Source(lines.join("; "))
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Every key, as the TOML file, `.env`, the environment and the flags give it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    /// The reference's name for the data directory.
    pub root_data_path: Option<PathBuf>,
    /// `sqlite` or `postgresql` (the reference's names).
    pub database_type: Option<String>,
    pub database_url: Option<String>,
    /// Directory of the SQLite database (the reference's name; default: the data directory).
    pub sqlite_path: Option<PathBuf>,
    pub database_max_connections: u32,
    pub master_key_file: Option<PathBuf>,
    pub dev: bool,
    pub max_body_size: usize,
    pub max_large_requests: usize,
    pub admin_address: SocketAddr,
    pub listen: Option<SocketAddr>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub proxy_ca_cert_file: Option<PathBuf>,
    pub proxy_allowed_cn: Vec<String>,
    pub log_format: String,
    pub rotation_check_interval: u64,
    pub drain_timeout: u64,
    pub header_read_timeout: u64,
    pub handshake_timeout: u64,
    pub hsm_module: Option<PathBuf>,
    pub hsm_slot: Option<u64>,
    pub hsm_token_label: Option<String>,
    pub hsm_pin_file: Option<PathBuf>,
    pub hsm_kek_label: Option<String>,
    pub hsm_admin: Vec<String>,
    pub hsm_sessions: usize,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            socket: "./data/kms-core.sock".into(),
            data_dir: "./data".into(),
            root_data_path: None,
            database_type: None,
            database_url: None,
            sqlite_path: None,
            database_max_connections: 16,
            master_key_file: None,
            dev: false,
            max_body_size: 34 * 1024 * 1024,
            max_large_requests: 2,
            admin_address: SocketAddr::from(([127, 0, 0, 1], 9465)),
            listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            proxy_ca_cert_file: None,
            proxy_allowed_cn: Vec::new(),
            log_format: "json".into(),
            rotation_check_interval: 60,
            drain_timeout: 30,
            header_read_timeout: 10,
            handshake_timeout: 10,
            hsm_module: None,
            hsm_slot: None,
            hsm_token_label: None,
            hsm_pin_file: None,
            hsm_kek_label: None,
            hsm_admin: Vec::new(),
            hsm_sessions: 8,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    /// sqlite://… or postgres://… (from database_type, database_url, sqlite_path).
    pub database_url: String,
    pub database_max_connections: u32,
    pub master_key_file: Option<PathBuf>,
    pub dev: bool,
    pub max_body_size: usize,
    pub max_large_requests: usize,
    pub admin_address: SocketAddr,
    pub listen: Option<SocketAddr>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub proxy_ca_cert_file: Option<PathBuf>,
    pub proxy_allowed_cn: Vec<String>,
    pub log_format: String,
    pub rotation_check_interval: Duration,
    pub drain_timeout: Duration,
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    pub hsm_module: Option<PathBuf>,
    pub hsm_slot: Option<u64>,
    pub hsm_token_label: Option<String>,
    pub hsm_pin_file: Option<PathBuf>,
    pub hsm_kek_label: Option<String>,
    pub hsm_admin: Vec<String>,
    pub hsm_sessions: usize,
}

/// Seconds within `range`, as a duration.
fn seconds(
    key: &'static str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    if range.contains(&value) {
        Ok(Duration::from_secs(value))
    } else {
        Err(invalid(
            key,
            format!(
                "{value} s: give {} to {} seconds",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// The database URL the three database keys describe.
fn database_url(raw: &RawConfig, data_dir: &std::path::Path) -> Result<String, ConfigError> {
    let scheme = raw.database_url.as_deref().map(|url| {
        if url.starts_with("sqlite:") {
            Ok("sqlite")
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok("postgresql")
        } else {
            Err(invalid(
                "database_url",
                "unknown scheme: give sqlite://PATH or postgres://USER@HOST:PORT/DB",
            ))
        }
    });
    let scheme = scheme.transpose()?;
    let kind = match raw.database_type.as_deref() {
        None => scheme.unwrap_or("sqlite"),
        Some(t @ ("sqlite" | "postgresql")) => t,
        Some(other) => {
            return Err(invalid(
                "database_type",
                format!("{other:?} is not supported: sqlite or postgresql"),
            ));
        }
    };
    match (kind, scheme, &raw.database_url, &raw.sqlite_path) {
        (kind, Some(scheme), _, _) if kind != scheme => Err(invalid(
            "database_url",
            format!("a {scheme} URL, but database_type is {kind}"),
        )),
        ("postgresql", _, None, _) => Err(invalid(
            "database_url",
            "database_type postgresql needs database_url (postgres://USER@HOST:PORT/DB)",
        )),
        ("postgresql", _, _, Some(_)) => Err(invalid(
            "sqlite_path",
            "sqlite_path is for database_type sqlite",
        )),
        (_, _, Some(_), Some(_)) => Err(invalid(
            "sqlite_path",
            "give database_url or sqlite_path, not both",
        )),
        (_, _, Some(url), None) => Ok(url.clone()),
        (_, _, None, path) => Ok(format!(
            "sqlite://{}?mode=rwc",
            path.as_deref().unwrap_or(data_dir).join("kms.db").display()
        )),
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let data_dir = match (&raw.root_data_path, &raw.data_dir) {
            (Some(root), dir) if dir != &RawConfig::default().data_dir && dir != root => {
                return Err(invalid(
                    "root_data_path",
                    "give data_dir or root_data_path (the same setting), not both",
                ));
            }
            (Some(root), _) => root.clone(),
            (None, dir) => dir.clone(),
        };
        if !matches!(raw.log_format.as_str(), "json" | "text") {
            return Err(invalid(
                "log_format",
                format!("{:?} (text or json)", raw.log_format),
            ));
        }
        if raw.database_max_connections == 0 {
            return Err(invalid("database_max_connections", "at least 1"));
        }
        if raw.max_body_size < 1024 {
            return Err(invalid("max_body_size", "at least 1024 bytes"));
        }
        if !(1..=256).contains(&raw.hsm_sessions) {
            return Err(invalid("hsm_sessions", "1 to 256"));
        }
        Ok(Self {
            database_url: database_url(&raw, &data_dir)?,
            rotation_check_interval: seconds(
                "rotation_check_interval",
                raw.rotation_check_interval,
                1..=86_400,
            )?,
            drain_timeout: seconds("drain_timeout", raw.drain_timeout, 0..=3_600)?,
            header_read_timeout: seconds("header_read_timeout", raw.header_read_timeout, 1..=300)?,
            handshake_timeout: seconds("handshake_timeout", raw.handshake_timeout, 1..=300)?,
            socket: raw.socket,
            data_dir,
            database_max_connections: raw.database_max_connections,
            master_key_file: raw.master_key_file,
            dev: raw.dev,
            max_body_size: raw.max_body_size,
            max_large_requests: raw.max_large_requests.max(1),
            admin_address: raw.admin_address,
            listen: raw.listen,
            tls_cert_file: raw.tls_cert_file,
            tls_key_file: raw.tls_key_file,
            proxy_ca_cert_file: raw.proxy_ca_cert_file,
            proxy_allowed_cn: raw.proxy_allowed_cn,
            log_format: raw.log_format,
            hsm_module: raw.hsm_module,
            hsm_slot: raw.hsm_slot,
            hsm_token_label: raw.hsm_token_label,
            hsm_pin_file: raw.hsm_pin_file,
            hsm_kek_label: raw.hsm_kek_label,
            hsm_admin: raw.hsm_admin,
            hsm_sessions: raw.hsm_sessions,
        })
    }
}

/// Merges defaults, the TOML file, `.env`, the environment and the flags, and validates.
pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
    load_from(flags, std::env::vars(), std::path::Path::new(".env"))
}

/// [`load`] with the environment and `.env` path given (for tests).
pub fn load_from(
    flags: &Flags,
    environment: impl Iterator<Item = (String, String)>,
    dot_env: &std::path::Path,
) -> Result<Config, ConfigError> {
    let environment: Vec<(String, String)> = environment.collect();
    let file = flags.config.clone().or_else(|| {
        environment
            .iter()
            .find(|(k, _)| k == "KMS_CORE_CONFIG")
            .map(|(_, v)| PathBuf::from(v))
    });
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(invalid(
                "config",
                format!("configuration file {} not found", file.display()),
            ));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    let figment = figment
        .merge(sources::EnvValues::from_dot_env(dot_env)?)
        .merge(sources::EnvValues::from_vars(
            environment.into_iter(),
            "environment",
        ))
        .merge(Serialized::defaults(flags));
    let raw: RawConfig = figment.extract()?;
    Config::try_from(raw)
}

impl Config {
    /// The HSM settings, when a module is configured. The PIN comes from `hsm_pin_file` or
    /// KMS_HSM_PIN, never from a flag value.
    pub fn hsm(&self) -> Result<Option<crate::hsm::HsmConfig>, String> {
        let Some(module) = &self.hsm_module else {
            if self.hsm_kek_label.is_some() {
                return Err("--hsm-kek-label needs --hsm-module".into());
            }
            return Ok(None);
        };
        let token = match (self.hsm_slot, &self.hsm_token_label) {
            (Some(slot), None) => crate::hsm::TokenSelector::Slot(slot),
            (None, Some(label)) => crate::hsm::TokenSelector::Label(label.clone()),
            _ => return Err("give exactly one of --hsm-slot and --hsm-token-label".into()),
        };
        let pin = match &self.hsm_pin_file {
            Some(file) => zeroize::Zeroizing::new(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("--hsm-pin-file {}: {e}", file.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            ),
            None => zeroize::Zeroizing::new(std::env::var("KMS_HSM_PIN").map_err(|_| {
                "the HSM PIN is missing: set KMS_HSM_PIN or --hsm-pin-file".to_owned()
            })?),
        };
        Ok(Some(crate::hsm::HsmConfig {
            module: module.clone(),
            token,
            pin,
            kek_label: self.hsm_kek_label.clone(),
            sessions: self.hsm_sessions,
        }))
    }
}
