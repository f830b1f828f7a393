//! The command line: every key of the configuration as a flag (unset flags leave the file,
//! `.env` and environment values in place), and the maintenance subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

/// kms-core: the key-management core behind kms-proxy. It trusts `X-KMS-User` because only
/// the proxy can reach its Unix socket. Every flag can also be set in the TOML file (same
/// name, `_` for `-`), in `.env` or in the environment (names in the README).
#[derive(Debug, Default, Parser, Serialize)]
#[command(name = "kms-core", version)]
pub struct Flags {
    /// TOML configuration file [env: KMS_CORE_CONFIG]
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Unix socket to serve on (mode 0660) [default: ./data/kms-core.sock]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Directory for the SQLite database and the development master key [default: ./data]
    #[arg(long, visible_alias = "root-data-path")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite` or `postgresql` [default: from --database-url, else sqlite]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_type: Option<String>,
    /// sqlite://path or postgres://user@host:port/db
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Directory of the SQLite database file kms.db [default: the data directory]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_path: Option<PathBuf>,
    /// Most database connections [default: 16]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_max_connections: Option<u32>,
    /// File holding the 32-byte master key (raw, or base64 on one line)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
    /// Development mode: create a master key under the data directory on first start
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dev: bool,
    /// Largest request body in bytes, 413 beyond [default: 34 MiB]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<usize>,
    /// Requests with bodies over 1 MiB processed at once; more wait up to 30 s [default: 2]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_large_requests: Option<usize>,
    /// Admin listener: /metrics, /healthz, /readyz [default: 127.0.0.1:9465]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_address: Option<SocketAddr>,
    /// Also serve on this TCP address; needs mTLS (--proxy-ca-cert-file) unless loopback
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Server certificate (PEM) for --listen
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// Server private key (PEM) for --listen
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// CA (PEM) that signed the proxy's client certificate: turns on mTLS for --listen
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_ca_cert_file: Option<PathBuf>,
    /// Subject CN the proxy's client certificate must carry (repeatable)
    #[arg(long)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy_allowed_cn: Vec<String>,
    /// Log format: json or text [default: json]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// Seconds between checks for keys due for automatic rotation [default: 60]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_check_interval: Option<u64>,
    /// Seconds in-flight requests get to finish after SIGTERM [default: 30]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<u64>,
    /// Seconds a client has to send a request's headers [default: 10]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<u64>,
    /// Seconds a TLS handshake on --listen may take [default: 10]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Option<u64>,
    /// PKCS#11 module of the HSM (e.g. /usr/lib/softhsm/libsofthsm2.so)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsm_module: Option<PathBuf>,
    /// HSM slot id (or use --hsm-token-label)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsm_slot: Option<u64>,
    /// HSM token label (or use --hsm-slot)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsm_token_label: Option<String>,
    /// File holding the HSM user PIN (else the KMS_HSM_PIN environment variable; never a flag)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsm_pin_file: Option<PathBuf>,
    /// Label of the HSM key that wraps every key at rest (created in the HSM when missing)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsm_kek_label: Option<String>,
    /// Users allowed to create and destroy keys in the HSM (repeatable)
    #[arg(long)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hsm_admin: Vec<String>,
    /// Sessions kept open with the HSM [default: 8]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsm_sessions: Option<usize>,

    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<CoreCommand>,
}

/// One-off maintenance commands (the server does not start).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CoreCommand {
    /// Re-wrap every stored key under another key-encryption key, then exit
    Rewrap {
        /// `hsm`: the HSM KEK (--hsm-kek-label); `master`: the master key file
        #[arg(long, value_enum)]
        to: crate::wrapping::Wrapping,
    },
}
