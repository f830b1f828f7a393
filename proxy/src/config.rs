//! Configuration: figment sources merged into [`RawConfig`], then validated into [`Config`].
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config` / `KMS_PROXY_CONFIG`),
//! a `.env` file in the working directory, `KMS_*` environment variables, command-line flags.
//! Every check happens here, before any port is bound; an error names the offending key.

mod flags;
pub mod jwt;
mod sources;
pub mod upstream_identity;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use http::HeaderName;
use serde::{Deserialize, Serialize};

pub use flags::{AuthFlags, Flags, parse_flags};
pub use sources::load;
pub use upstream_identity::{MintAlgorithm, UpstreamIdentityMode, UpstreamJwt};
use validate::{readable_file, seconds};

/// Prefix of every environment variable the proxy reads.
pub const ENV_PREFIX: &str = "KMS_";

/// A configuration problem found before start. The message always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", describe(.0))]
    Source(Box<figment::Error>),
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot read the .env file {path}: {reason}")]
    DotEnv { path: PathBuf, reason: String },
}

/// One line per problem, naming the key and where its value came from.
fn describe(error: &figment::Error) -> String {
    let lines: Vec<String> = error
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_ascii_lowercase();
            let source = e.metadata.as_ref().map_or_else(String::new, |m| {
                if m.name.contains("environment") && !key.is_empty() {
                    format!(
                        " (from environment variable {ENV_PREFIX}{})",
                        key.trim_start_matches("auth.").to_ascii_uppercase()
                    )
                } else {
                    match &m.source {
                        Some(source) => format!(" (from {source})"),
                        None => format!(" (from {})", m.name),
                    }
                }
            });
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                format!("unknown key `{field}`{source}; see kms-proxy --help for the valid keys")
            } else if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("invalid value for `{key}`: {}{source}", e.kind)
            }
        })
        .collect();
    lines.join("; ")
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        Self::Source(Box::new(e))
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// A secret string: deserialized as given, never printed (Debug and Serialize both say `***`).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything a user can set, as it arrives from the sources. Unknown keys are refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub hostname: String,
    pub port: u16,
    pub upstream: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub https_p12_file: Option<PathBuf>,
    pub https_p12_password: Option<Secret>,
    pub insecure_http: bool,
    pub upstream_ca_cert_file: Option<PathBuf>,
    pub upstream_client_cert_file: Option<PathBuf>,
    pub upstream_client_key_file: Option<PathBuf>,
    pub upstream_health_path: String,
    pub default_username: String,
    pub identity_header: String,
    pub admin_address: String,
    pub log_format: LogFormat,
    pub max_body_size: u64,
    pub max_header_size: u64,
    pub max_connections: u64,
    pub header_read_timeout: f64,
    pub body_read_timeout: f64,
    pub idle_timeout: f64,
    pub tls_handshake_timeout: f64,
    pub upstream_connect_timeout: f64,
    pub upstream_timeout: f64,
    pub shutdown_timeout: f64,
    pub cert_reload_interval: f64,
    pub authority_cert_file: Option<PathBuf>,
    pub client_cert: ClientCertMode,
    pub crl_file: Option<PathBuf>,
    pub force_default_username: bool,
    pub api_token_id: Option<String>,
    pub api_token_refresh_interval: f64,
    pub upstream_identity: UpstreamIdentityMode,
    pub upstream_jwt_issuer: Option<String>,
    pub upstream_jwt_audience: Option<String>,
    pub upstream_jwt_lifetime: Option<f64>,
    pub upstream_jwt_algorithm: Option<MintAlgorithm>,
    pub upstream_jwt_key_file: Option<PathBuf>,
    pub upstream_jwt_key_rotation: Option<f64>,
    pub upstream_jwt_publish_ahead: Option<f64>,
    pub upstream_jwt_jwks_address: Option<String>,
    /// `[auth]`: JWT identity providers.
    pub auth: jwt::RawAuth,
}

/// Whether a client certificate is required at the handshake when mTLS is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertMode {
    Required,
    Optional,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            hostname: "0.0.0.0".into(),
            port: 9998,
            upstream: None,
            tls_cert_file: None,
            tls_key_file: None,
            https_p12_file: None,
            https_p12_password: None,
            insecure_http: false,
            upstream_ca_cert_file: None,
            upstream_client_cert_file: None,
            upstream_client_key_file: None,
            upstream_health_path: "/health".into(),
            default_username: "admin".into(),
            identity_header: "X-KMS-User".into(),
            admin_address: "127.0.0.1:9464".into(),
            log_format: LogFormat::Text,
            max_body_size: 64 * 1024 * 1024 + 1024 * 1024,
            max_header_size: 16 * 1024,
            max_connections: 10_000,
            header_read_timeout: 10.0,
            body_read_timeout: 30.0,
            idle_timeout: 60.0,
            tls_handshake_timeout: 10.0,
            upstream_connect_timeout: 5.0,
            upstream_timeout: 60.0,
            shutdown_timeout: 30.0,
            cert_reload_interval: 10.0,
            authority_cert_file: None,
            client_cert: ClientCertMode::Required,
            crl_file: None,
            force_default_username: false,
            api_token_id: None,
            api_token_refresh_interval: 60.0,
            upstream_identity: UpstreamIdentityMode::Header,
            upstream_jwt_issuer: None,
            upstream_jwt_audience: None,
            upstream_jwt_lifetime: None,
            upstream_jwt_algorithm: None,
            upstream_jwt_key_file: None,
            upstream_jwt_key_rotation: None,
            upstream_jwt_publish_ahead: None,
            upstream_jwt_jwks_address: None,
            auth: jwt::RawAuth::default(),
        }
    }
}

/// The configuration a TOML text alone gives (defaults underneath): what `--config FILE`
/// gives without environment or flags. The fuzzer's entry point into the config loader.
pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string(text))
        .extract()?;
    Config::try_from(raw)
}

/// Where the proxy sends requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    Unix(PathBuf),
    Http { host: String, port: u16 },
    Https { host: String, port: u16 },
}

/// As it was configured: `unix:/path`, `http://host:port` or `https://host:port`.
impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Http { .. } => write!(f, "http://{}", self.authority()),
            Self::Https { .. } => write!(f, "https://{}", self.authority()),
        }
    }
}

impl Upstream {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        const KEY: &str = "upstream";
        if let Some(path) = value.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(invalid(KEY, "unix: needs a socket path"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let uri: http::Uri = value
            .parse()
            .map_err(|e| invalid(KEY, format!("{value:?} is not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(invalid(
                    KEY,
                    "expected unix:/path.sock, http://host:port or https://host:port",
                ));
            }
        };
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(invalid(KEY, "the upstream URL must not have a path"));
        }
        let host = uri
            .host()
            .ok_or_else(|| invalid(KEY, "missing host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(if https {
            Self::Https { host, port }
        } else {
            Self::Http { host, port }
        })
    }

    /// Authority used in the absolute URI given to the connection pool.
    pub fn authority(&self) -> String {
        match self {
            Self::Unix(_) => "localhost".into(),
            Self::Http { host, port } | Self::Https { host, port } => {
                if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            }
        }
    }
}

/// Where the server certificate comes from.
#[derive(Debug, Clone)]
pub enum ServerCert {
    Pem { cert: PathBuf, key: PathBuf },
    Pkcs12 { file: PathBuf, password: Secret },
}

impl ServerCert {
    /// Files whose change triggers a reload.
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            Self::Pem { cert, key } => vec![cert.clone(), key.clone()],
            Self::Pkcs12 { file, .. } => vec![file.clone()],
        }
    }
}

/// TLS settings towards an https upstream.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Bounds on every input.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_size: u64,
    pub max_header_size: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub server_cert: Option<ServerCert>,
    pub upstream: Upstream,
    pub upstream_tls: UpstreamTls,
    pub upstream_health_path: String,
    pub default_username: String,
    pub identity_header: HeaderName,
    pub admin_address: SocketAddr,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub cert_reload_interval: Duration,
    pub auth: AuthConfig,
    /// Set when the identity goes upstream as a minted JWT.
    pub upstream_jwt: Option<UpstreamJwt>,
}

/// Client certificate authentication.
#[derive(Debug, Clone)]
pub struct MtlsConfig {
    pub ca_file: PathBuf,
    pub mode: ClientCertMode,
    pub crl_file: Option<PathBuf>,
}

/// The configured authentication methods.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub mtls: Option<MtlsConfig>,
    pub force_default_username: bool,
    /// The API token key's uid and how often to re-fetch it.
    pub api_token: Option<(String, Duration)>,
    pub jwt: Option<jwt::JwtConfig>,
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_text_alone() {
        let config = from_toml("upstream = \"unix:/run/kms.sock\"\ninsecure_http = true\n");
        assert!(config.is_ok_and(|c| c.upstream == Upstream::Unix("/run/kms.sock".into())));
        let unknown = from_toml("upstream = \"unix:/x\"\ninsecure_http = true\nupsteam = 1\n");
        assert!(unknown.is_err_and(|e| e.to_string().contains("upsteam")));
        assert!(from_toml("port = \"x\"").is_err());
    }

    #[test]
    fn upstream_forms() {
        assert_eq!(
            Upstream::parse("unix:/run/kms.sock").ok(),
            Some(Upstream::Unix("/run/kms.sock".into()))
        );
        assert_eq!(
            Upstream::parse("https://core.local:8443").ok(),
            Some(Upstream::Https {
                host: "core.local".into(),
                port: 8443
            })
        );
        assert_eq!(
            Upstream::parse("http://[::1]:80")
                .ok()
                .map(|u| u.authority()),
            Some("[::1]:80".into())
        );
        assert!(Upstream::parse("ftp://x").is_err());
        assert!(Upstream::parse("http://x:1/path").is_err());
        assert!(Upstream::parse("unix:").is_err());
    }

    #[test]
    fn secrets_are_masked() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(serde_json::to_string(&s).ok().as_deref(), Some("\"***\""));
    }
}
