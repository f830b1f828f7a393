//! The command line: every option optional, each with its `KMS_*` variable named in `--help`.

use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

use super::{ClientCertMode, ENV_PREFIX, LogFormat, MintAlgorithm, UpstreamIdentityMode};

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
