//! Command line and environment of kms-core, validated before anything is opened or bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// kms-core: the key-management core behind kms-proxy. It trusts `X-KMS-User` because only
/// the proxy can reach its Unix socket.
#[derive(Parser)]
#[command(name = "kms-core", version)]
pub struct Flags {
    /// Unix socket to serve on (mode 0660)
    #[arg(long, env = "KMS_SOCKET", default_value = "./data/kms-core.sock")]
    pub socket: PathBuf,
    /// Directory for the SQLite database and the development master key
    #[arg(long, env = "KMS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// sqlite://path or postgres://user@host:port/db [default: sqlite under the data directory]
    #[arg(long, env = "KMS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Most database connections
    #[arg(long, env = "KMS_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// File holding the 32-byte master key (raw, or base64 on one line)
    #[arg(long, env = "KMS_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Development mode: create a master key under the data directory on first start
    #[arg(long, env = "KMS_DEV")]
    pub dev: bool,
    /// Largest request body in bytes (413 beyond). The default takes a 16 MiB Encrypt or
    /// Decrypt (hex doubles it); larger data is for envelope encryption (`ckms --envelope`)
    #[arg(long, env = "KMS_CORE_MAX_BODY_SIZE", default_value_t = 34 * 1024 * 1024)]
    pub max_body_size: usize,
    /// Requests with bodies over 1 MiB processed at once; more wait (up to 30 s, then 503)
    #[arg(long, env = "KMS_CORE_MAX_LARGE_REQUESTS", default_value_t = 2)]
    pub max_large_requests: usize,
    /// Admin listener: /metrics, /healthz, /readyz
    #[arg(long, env = "KMS_CORE_ADMIN_ADDRESS", default_value = "127.0.0.1:9465")]
    pub admin_address: SocketAddr,
    /// Also serve on this TCP address; needs mTLS (--proxy-ca-cert-file) unless it is loopback
    #[arg(long, env = "KMS_CORE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Server certificate (PEM) for --listen
    #[arg(long, env = "KMS_CORE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// Server private key (PEM) for --listen
    #[arg(long, env = "KMS_CORE_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA (PEM) that signed the proxy's client certificate: turns on mTLS for --listen
    #[arg(long, env = "KMS_PROXY_CA_CERT_FILE")]
    pub proxy_ca_cert_file: Option<PathBuf>,
    /// Subject CN the proxy's client certificate must carry (repeatable; comma-separated in env)
    #[arg(long, env = "KMS_PROXY_ALLOWED_CN", value_delimiter = ',')]
    pub proxy_allowed_cn: Vec<String>,
    /// Seconds between checks for keys whose rotation policy makes them due for rotation
    #[arg(long, env = "KMS_CORE_ROTATION_CHECK_INTERVAL", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub rotation_check_interval: u64,
    /// Log format: json (default: every audit line is one JSON object) or text
    #[arg(long, env = "KMS_LOG_FORMAT", default_value = "json")]
    pub log_format: String,

    /// PKCS#11 module of the HSM (e.g. /usr/lib/softhsm/libsofthsm2.so)
    #[arg(long, env = "KMS_HSM_MODULE")]
    pub hsm_module: Option<PathBuf>,
    /// HSM slot id (or use --hsm-token-label)
    #[arg(long, env = "KMS_HSM_SLOT")]
    pub hsm_slot: Option<u64>,
    /// HSM token label (or use --hsm-slot)
    #[arg(long, env = "KMS_HSM_TOKEN_LABEL")]
    pub hsm_token_label: Option<String>,
    /// File holding the HSM user PIN (else the KMS_HSM_PIN environment variable; never a flag)
    #[arg(long, env = "KMS_HSM_PIN_FILE")]
    pub hsm_pin_file: Option<PathBuf>,
    /// Label of the HSM key that wraps every key at rest (created in the HSM when missing)
    #[arg(long, env = "KMS_HSM_KEK_LABEL")]
    pub hsm_kek_label: Option<String>,
    /// Users allowed to create and destroy keys in the HSM (repeatable; comma-separated in env)
    #[arg(long, env = "KMS_HSM_ADMIN", value_delimiter = ',')]
    pub hsm_admin: Vec<String>,
    /// Sessions kept open with the HSM
    #[arg(long, env = "KMS_HSM_SESSIONS", default_value_t = 8)]
    pub hsm_sessions: usize,

    #[command(subcommand)]
    pub command: Option<CoreCommand>,
}

/// One-off maintenance commands (the server does not start).
#[derive(Debug, clap::Subcommand)]
pub enum CoreCommand {
    /// Re-wrap every stored key under another key-encryption key, then exit
    Rewrap {
        /// `hsm`: the HSM KEK (--hsm-kek-label); `master`: the master key file
        #[arg(long, value_enum)]
        to: crate::wrapping::Wrapping,
    },
}

impl Flags {
    /// The HSM settings, when a module is configured. The PIN comes from --hsm-pin-file or
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
            sessions: self.hsm_sessions.clamp(1, 256),
        }))
    }
}

impl Flags {
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("kms.db").display()
            )
        })
    }
}
