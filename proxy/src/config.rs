//! Configuration: figment sources merged into [`RawConfig`], then validated into [`Config`].
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config` / `KMS_PROXY_CONFIG`),
//! a `.env` file in the working directory, `KMS_*` environment variables, command-line flags.
//! Every check happens here, before any port is bound; an error names the offending key.

pub mod jwt;
pub mod upstream_identity;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use http::HeaderName;
use serde::{Deserialize, Serialize};

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

/// Command-line flags. Every option is optional so that only what was given overrides the
/// other sources; the environment variable of each flag is `KMS_` + its name in capitals.
#[derive(Debug, Default, Parser, Serialize)]
#[command(
    name = "kms-proxy",
    version,
    about = "TLS-terminating authentication proxy for kms-core"
)]
pub struct Flags {
    /// TOML configuration file [env: KMS_PROXY_CONFIG]
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (secrets masked) and exit
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
    /// Ask the admin listener's /healthz (at HOST:PORT, default the configured admin address)
    /// and exit 0 when it answers 200, else 1: a container health check that needs no shell
    #[arg(long, value_name = "HOST:PORT", num_args = 0..=1, default_missing_value = "")]
    #[serde(skip)]
    pub healthcheck: Option<String>,

    /// Address to listen on [default: 0.0.0.0]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port to listen on; 0 picks a free port [default: 9998]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Where requests go: unix:/path.sock, http://host:port or https://host:port
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Server certificate chain (PEM)
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// Server private key (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// Server certificate and key as PKCS#12
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_p12_file: Option<PathBuf>,
    /// Password of the PKCS#12 file (prefer KMS_HTTPS_P12_PASSWORD: flags are visible in ps)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_p12_password: Option<String>,
    /// Serve plain HTTP without TLS (development only)
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    pub insecure_http: bool,
    /// CA bundle (PEM) that signs the upstream's certificate, for https upstreams
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ca_cert_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to an https upstream
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_client_cert_file: Option<PathBuf>,
    /// Private key (PEM) of the upstream client certificate
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_client_key_file: Option<PathBuf>,
    /// Path probed on the upstream by /readyz [default: /health]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_health_path: Option<String>,
    /// User forwarded when no authentication method is configured [default: admin]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_username: Option<String>,
    /// Name of the header that carries the user to the upstream [default: X-KMS-User]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_header: Option<String>,
    /// Admin listener for /metrics, /healthz, /readyz [default: 127.0.0.1:9464]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_address: Option<String>,
    /// Log format [default: text]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Largest request body in bytes; larger gets 413 [default: 68157440]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<u64>,
    /// Largest total size of request headers in bytes; larger gets 431 [default: 16384]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_header_size: Option<u64>,
    /// Most client connections open at once; more are closed at accept [default: 10000]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Seconds a client has to send the request headers [default: 10]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<f64>,
    /// Seconds allowed between two chunks of a request or response body [default: 30]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_read_timeout: Option<f64>,
    /// Seconds an idle keep-alive connection stays open [default: 60]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<f64>,
    /// Seconds a client has to complete the TLS handshake [default: 10]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_timeout: Option<f64>,
    /// Seconds to connect to the upstream; then 502 [default: 5]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_connect_timeout: Option<f64>,
    /// Seconds for the upstream to answer with headers; then 504 [default: 60]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_timeout: Option<f64>,
    /// Seconds in-flight requests get to finish after SIGTERM [default: 30]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<f64>,
    /// Seconds between checks of the certificate files for changes [default: 10]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_reload_interval: Option<f64>,
    /// CA bundle (PEM) for client certificates: turns on mTLS authentication
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_cert_file: Option<PathBuf>,
    /// With mTLS: require a client certificate at the handshake, or accept it as one method
    /// among others [default: required]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<ClientCertMode>,
    /// Certificate revocation list(s) (PEM) checked for client certificates
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl_file: Option<PathBuf>,
    /// Authenticate as configured, then forward every request as the default user
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    pub force_default_username: bool,
    /// Uid of the symmetric key in the upstream KMS whose base64 bytes are the API token
    #[arg(long, alias = "api_token_id")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_token_id: Option<String>,
    /// Seconds between re-fetches of the API token key (a revoked key stops working) [default: 60]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_token_refresh_interval: Option<f64>,
    /// How the user reaches the upstream: the identity header, or a JWT signed by this proxy
    /// in `Authorization` (for a KMS that verifies OIDC tokens) [default: header]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_identity: Option<UpstreamIdentityMode>,
    /// `iss` of minted tokens: this proxy's https URL as the upstream reaches it; the keys are
    /// served at <issuer>/.well-known/jwks.json
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_jwt_issuer: Option<String>,
    /// `aud` of minted tokens, as the upstream expects it
    #[arg(long, value_name = "AUDIENCE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_jwt_audience: Option<String>,
    /// Seconds a minted token is valid (10-3600) [default: 60]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_jwt_lifetime: Option<f64>,
    /// Algorithm of a generated signing key [default: ES256]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_jwt_algorithm: Option<MintAlgorithm>,
    /// Signing key (PEM PKCS#8: P-256, RSA or Ed25519); reloaded when it changes
    /// [default: generated at start, kept in memory]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_jwt_key_file: Option<PathBuf>,
    /// Seconds between replacements of a generated signing key [default: 86400]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_jwt_key_rotation: Option<f64>,
    /// Seconds a changed key file's new key is published before it signs [default: 60]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_jwt_publish_ahead: Option<f64>,
    /// Serve the JWKS and discovery documents on this address too (TLS, no client
    /// certificate): needed when the main listener requires client certificates
    #[arg(long, value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_jwt_jwks_address: Option<String>,

    #[command(flatten)]
    #[serde(rename = "auth")]
    pub auth: AuthFlags,
}

/// The flags of the `[auth]` table (JWT identity providers).
#[derive(Debug, Default, clap::Args, Serialize)]
pub struct AuthFlags {
    /// Issuer of accepted JWTs (matched exactly against `iss`); repeat for several providers
    #[arg(long, value_name = "URI")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_issuer_uri: Vec<String>,
    /// JWKS URL of the issuer at the same position [default: <issuer>/.well-known/jwks.json]
    #[arg(long, value_name = "URI")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwks_uri: Vec<String>,
    /// Audience required in `aud` for the issuer at the same position
    #[arg(long, value_name = "AUDIENCE")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_audience: Vec<String>,
    /// Find each issuer's JWKS URL by OIDC discovery instead of the default
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    pub jwt_discovery: bool,
    /// CA bundle (PEM) trusted for the JWKS and discovery endpoints [default: system roots]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_ca_cert_file: Option<PathBuf>,
    /// Seconds between JWKS refreshes [default: 300]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_refresh_interval: Option<f64>,
    /// Verified tokens kept in memory so a repeated token skips the signature check [default: 10000]
    #[arg(long, value_name = "ENTRIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_cache_size: Option<u64>,
}

/// The command line, with each option's environment variable shown in `--help`.
pub fn parse_flags() -> Flags {
    use clap::{CommandFactory, FromArgMatches};
    let command = Flags::command().mut_args(|arg| {
        let id = arg.get_id().as_str().to_owned();
        if matches!(
            id.as_str(),
            "config" | "print_config" | "healthcheck" | "help" | "version"
        ) {
            return arg;
        }
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        arg.help(format!(
            "{help} [env: {ENV_PREFIX}{}]",
            id.to_ascii_uppercase()
        ))
    });
    let matches = command.get_matches();
    Flags::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The names every source may use (TOML keys, and env names after the prefix); the keys of
/// the `[auth]` table appear as `auth.<key>` (their env names are `KMS_<KEY>`).
fn known_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(RawConfig::default()) {
        for (key, value) in map {
            match (key.as_str(), value) {
                ("auth", serde_json::Value::Object(auth)) => {
                    keys.extend(
                        auth.keys()
                            .filter(|k| *k != "providers")
                            .map(|k| format!("auth.{k}")),
                    );
                }
                _ => {
                    keys.insert(key);
                }
            }
        }
    }
    keys
}

/// `KMS_*` variables from a `.env` file, as a figment provider of their own.
struct DotEnv {
    values: Dict,
}

impl DotEnv {
    fn load(path: &Path, known: &BTreeSet<String>) -> Result<Self, ConfigError> {
        let mut values = Dict::new();
        if !path.exists() {
            return Ok(Self { values });
        }
        let err = |e: dotenvy::Error| ConfigError::DotEnv {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        for item in dotenvy::from_path_iter(path).map_err(err)? {
            let (name, value) = item.map_err(err)?;
            if let Some(key) = env_key(&name, known) {
                let parsed = value
                    .parse::<figment::value::Value>()
                    .unwrap_or_else(|never| match never {});
                match key.split_once('.') {
                    Some((table, inner)) => {
                        if let figment::value::Value::Dict(_, dict) = values
                            .entry(table.to_owned())
                            .or_insert_with(|| Dict::new().into())
                        {
                            dict.insert(inner.to_owned(), parsed);
                        }
                    }
                    None => {
                        values.insert(key, parsed);
                    }
                }
            }
        }
        Ok(Self { values })
    }
}

/// The config key of a `KMS_*` variable, or None when the proxy does not own that name
/// (kms-core reads other `KMS_*` variables from the same environment).
fn env_key(name: &str, known: &BTreeSet<String>) -> Option<String> {
    let key = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    if known.contains(&key) {
        return Some(key);
    }
    let nested = format!("auth.{key}");
    known.contains(&nested).then_some(nested)
}

impl figment::Provider for DotEnv {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(".env file")
    }
    fn data(&self) -> Result<Map<figment::Profile, Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.values.clone()))
    }
}

/// `KMS_PROXY_CONFIG` as a `.env` file sets it, if it does.
fn dotenv_config_file(path: &Path) -> Result<Option<PathBuf>, ConfigError> {
    if !path.exists() {
        return Ok(None);
    }
    let err = |e: dotenvy::Error| ConfigError::DotEnv {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    for item in dotenvy::from_path_iter(path).map_err(err)? {
        let (name, value) = item.map_err(err)?;
        if name == "KMS_PROXY_CONFIG" {
            return Ok(Some(PathBuf::from(value)));
        }
    }
    Ok(None)
}

/// Merge every source into the raw configuration.
pub fn load(flags: &Flags) -> Result<RawConfig, ConfigError> {
    let known = known_keys();
    // The file named by the flag, the environment, or `.env` (the same precedence as values).
    let file = match (&flags.config, std::env::var_os("KMS_PROXY_CONFIG")) {
        (Some(file), _) => Some(file.clone()),
        (None, Some(file)) => Some(PathBuf::from(file)),
        (None, None) => dotenv_config_file(Path::new(".env"))?,
    };
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
    let known_env = known.clone();
    figment = figment
        .merge(DotEnv::load(Path::new(".env"), &known)?)
        .merge(Env::prefixed(ENV_PREFIX).filter_map(move |k| {
            env_key(&format!("{ENV_PREFIX}{}", k.as_str()), &known_env).map(Into::into)
        }))
        .merge(Serialized::defaults(flags));
    Ok(figment.extract()?)
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

    #[test]
    fn known_keys_cover_the_struct() {
        let keys = known_keys();
        assert!(keys.contains("port") && keys.contains("https_p12_password"));
        assert_eq!(env_key("KMS_PORT", &keys).as_deref(), Some("port"));
        assert_eq!(env_key("KMS_DATABASE_URL", &keys), None);
        assert_eq!(
            env_key("KMS_JWT_ISSUER_URI", &keys).as_deref(),
            Some("auth.jwt_issuer_uri")
        );
        assert_eq!(env_key("KMS_PROVIDERS", &keys), None);
    }
}
