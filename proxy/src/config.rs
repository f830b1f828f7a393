//! Configuration: figment sources merged into [`RawConfig`], then validated into [`Config`].
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config` / `KMS_PROXY_CONFIG`),
//! a `.env` file in the working directory, `KMS_*` environment variables, command-line flags.
//! Every check happens here, before any port is bound; an error names the offending key.

mod flags;
pub mod jwt;
mod sources;
pub mod upstream_identity;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use http::HeaderName;
use serde::{Deserialize, Serialize};

pub use flags::{AuthFlags, Flags, parse_flags};
pub use sources::load;
pub use upstream_identity::{MintAlgorithm, UpstreamIdentityMode, UpstreamJwt};

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

fn seconds(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value <= 0.0 || value > 86_400.0 * 365.0 {
        return Err(invalid(
            key,
            format!("{value} is not a positive number of seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

fn socket_addr(key: &'static str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(key, format!("cannot resolve {host:?}: {e}")))?
        .next()
        .ok_or_else(|| invalid(key, format!("{host:?} resolves to no address")))
}

fn readable_file(key: &'static str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(invalid(key, format!("file {} not found", path.display())))
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let listen = socket_addr("hostname", &raw.hostname, raw.port)?;
        let pem = match (raw.tls_cert_file, raw.tls_key_file) {
            (Some(cert), Some(key)) => {
                readable_file("tls_cert_file", &cert)?;
                readable_file("tls_key_file", &key)?;
                Some(ServerCert::Pem { cert, key })
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid("tls_key_file", "tls_cert_file needs tls_key_file"));
            }
            (None, Some(_)) => {
                return Err(invalid("tls_cert_file", "tls_key_file needs tls_cert_file"));
            }
        };
        let p12 = match raw.https_p12_file {
            Some(file) => {
                readable_file("https_p12_file", &file)?;
                Some(ServerCert::Pkcs12 {
                    file,
                    password: raw.https_p12_password.unwrap_or_default(),
                })
            }
            None => None,
        };
        let server_cert = match (pem, p12) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "https_p12_file",
                    "give either tls_cert_file and tls_key_file or https_p12_file, not both",
                ));
            }
            (pem, p12) => pem.or(p12),
        };
        if server_cert.is_none() && !raw.insecure_http {
            return Err(invalid(
                "tls_cert_file",
                "no server certificate: set tls_cert_file and tls_key_file, or https_p12_file \
                 (insecure_http serves plain HTTP, for development only)",
            ));
        }
        let server_cert = if raw.insecure_http { None } else { server_cert };
        let upstream = Upstream::parse(raw.upstream.as_deref().ok_or_else(|| {
            invalid("upstream", "required: unix:/path.sock or https://host:port")
        })?)?;
        let client_cert = match (raw.upstream_client_cert_file, raw.upstream_client_key_file) {
            (Some(c), Some(k)) => {
                readable_file("upstream_client_cert_file", &c)?;
                readable_file("upstream_client_key_file", &k)?;
                Some((c, k))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "upstream_client_key_file",
                    "upstream_client_cert_file needs upstream_client_key_file",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "upstream_client_cert_file",
                    "upstream_client_key_file needs upstream_client_cert_file",
                ));
            }
        };
        if let Some(ca) = &raw.upstream_ca_cert_file {
            readable_file("upstream_ca_cert_file", ca)?;
        }
        let tls_options = raw.upstream_ca_cert_file.is_some() || client_cert.is_some();
        if tls_options && !matches!(upstream, Upstream::Https { .. }) {
            return Err(invalid(
                "upstream_ca_cert_file",
                "upstream TLS options need an https:// upstream",
            ));
        }
        if !raw.upstream_health_path.starts_with('/') {
            return Err(invalid("upstream_health_path", "must start with /"));
        }
        let default_username = raw.default_username.trim().to_owned();
        if default_username.is_empty() || http::HeaderValue::from_str(&default_username).is_err() {
            return Err(invalid(
                "default_username",
                "must be a non-empty header-safe string",
            ));
        }
        let identity_header = HeaderName::try_from(raw.identity_header.as_str())
            .map_err(|_| invalid("identity_header", "not a valid header name"))?;
        let admin_address = raw
            .admin_address
            .parse::<SocketAddr>()
            .map_err(|e| invalid("admin_address", format!("expected host:port: {e}")))?;
        if raw.max_header_size < 1024 || raw.max_header_size > 1024 * 1024 {
            return Err(invalid(
                "max_header_size",
                "must be between 1024 and 1048576 bytes",
            ));
        }
        if raw.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        if raw.max_body_size == 0 {
            return Err(invalid("max_body_size", "must be at least 1"));
        }
        let mtls = match raw.authority_cert_file {
            Some(ca_file) => {
                readable_file("authority_cert_file", &ca_file)?;
                if raw.insecure_http {
                    return Err(invalid(
                        "authority_cert_file",
                        "client certificates need TLS; remove insecure_http",
                    ));
                }
                if let Some(crl) = &raw.crl_file {
                    readable_file("crl_file", crl)?;
                }
                Some(MtlsConfig {
                    ca_file,
                    mode: raw.client_cert,
                    crl_file: raw.crl_file,
                })
            }
            None if raw.crl_file.is_some() => {
                return Err(invalid("crl_file", "a CRL needs authority_cert_file"));
            }
            None => None,
        };
        let api_token = match raw.api_token_id {
            // The uid goes into a URL path (`/access/list/<uid>`): unreserved characters only.
            Some(uid)
                if uid.is_empty()
                    || !uid
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) =>
            {
                return Err(invalid(
                    "api_token_id",
                    format!("{uid:?}: must be a key uid (letters, digits, - . _ ~)"),
                ));
            }
            Some(uid) => Some((
                uid,
                seconds("api_token_refresh_interval", raw.api_token_refresh_interval)?,
            )),
            None => None,
        };
        let client_cert_required = mtls
            .as_ref()
            .is_some_and(|m| m.mode == ClientCertMode::Required);
        let upstream_jwt = upstream_identity::validate(
            upstream_identity::RawUpstreamIdentity {
                mode: raw.upstream_identity,
                issuer: raw.upstream_jwt_issuer,
                audience: raw.upstream_jwt_audience,
                lifetime: raw.upstream_jwt_lifetime,
                algorithm: raw.upstream_jwt_algorithm,
                key_file: raw.upstream_jwt_key_file,
                key_rotation: raw.upstream_jwt_key_rotation,
                publish_ahead: raw.upstream_jwt_publish_ahead,
                jwks_address: raw.upstream_jwt_jwks_address,
            },
            server_cert.is_some(),
            client_cert_required,
        )?;
        let auth = AuthConfig {
            mtls,
            force_default_username: raw.force_default_username,
            api_token,
            jwt: jwt::validate(raw.auth, &identity_header)?,
        };
        let limits = Limits {
            max_body_size: raw.max_body_size,
            max_header_size: usize::try_from(raw.max_header_size).unwrap_or(usize::MAX),
            max_connections: usize::try_from(raw.max_connections).unwrap_or(usize::MAX),
            header_read_timeout: seconds("header_read_timeout", raw.header_read_timeout)?,
            body_read_timeout: seconds("body_read_timeout", raw.body_read_timeout)?,
            idle_timeout: seconds("idle_timeout", raw.idle_timeout)?,
            tls_handshake_timeout: seconds("tls_handshake_timeout", raw.tls_handshake_timeout)?,
            upstream_connect_timeout: seconds(
                "upstream_connect_timeout",
                raw.upstream_connect_timeout,
            )?,
            upstream_timeout: seconds("upstream_timeout", raw.upstream_timeout)?,
            shutdown_timeout: seconds("shutdown_timeout", raw.shutdown_timeout)?,
        };
        Ok(Self {
            listen,
            server_cert,
            upstream,
            upstream_tls: UpstreamTls {
                ca_file: raw.upstream_ca_cert_file,
                client_cert,
            },
            upstream_health_path: raw.upstream_health_path,
            default_username,
            identity_header,
            admin_address,
            log_format: raw.log_format,
            limits,
            cert_reload_interval: seconds("cert_reload_interval", raw.cert_reload_interval)?,
            auth,
            upstream_jwt,
        })
    }
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
