//! The command line: clap definitions and dispatch. Every command prints a short human line,
//! or one JSON object with `--json`, and fails with a non-zero exit code.

pub mod access;
pub mod asym;
pub mod asym_keys;
pub mod attributes;
pub mod certificates;
pub mod crypt;
pub mod envelope;
pub mod lifecycle;
pub mod login;
pub mod objects;
pub mod secret;
pub mod sym;
pub mod tools;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::config::{self, Conf};
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip;

#[derive(Debug, Parser)]
#[command(
    name = "ckms",
    version,
    about = "Command-line client of the KMS (kms-proxy + kms-core), compatible with Cosmian's ckms"
)]
pub struct Cli {
    /// Configuration file [default: $CKMS_CONF, $CKMS_CONF_PATH, or ~/.cosmian/ckms.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub conf: Option<PathBuf>,
    /// Print results as JSON (for scripts)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Symmetric keys, and encryption and decryption of files
    Sym {
        #[command(subcommand)]
        command: sym::SymCommand,
    },
    /// RSA key pairs: create, export, import; encrypt, decrypt, sign, verify
    Rsa {
        #[command(subcommand)]
        command: asym::RsaCommand,
    },
    /// Elliptic-curve key pairs (NIST P-256/384/521, Ed25519): create, export, import; sign,
    /// verify
    Ec {
        #[command(subcommand)]
        command: asym::EcCommand,
    },
    /// X.509 certificates: certify, export, import, validate, revoke, destroy
    Certificates {
        #[command(subcommand)]
        command: certificates::CertificatesCommand,
    },
    /// Secret data: passwords and seeds
    SecretData {
        #[command(subcommand)]
        command: secret::SecretCommand,
    },
    /// Opaque objects: bytes the KMS keeps without interpreting them
    OpaqueObject {
        #[command(subcommand)]
        command: secret::OpaqueCommand,
    },
    /// Get, set, delete and modify an object's attributes
    Attributes {
        #[command(subcommand)]
        command: attributes::AttributesCommand,
    },
    /// Grant, revoke and list access rights to keys
    AccessRights {
        #[command(subcommand)]
        command: access::AccessCommand,
    },
    /// Find keys by tag
    Locate(LocateArgs),
    /// Hash data on the server
    Hash(tools::HashArgs),
    /// MAC (HMAC) of data with a key of the KMS
    Mac {
        #[command(subcommand)]
        command: tools::MacCommand,
    },
    /// Derive a new key from a key, secret data or a password (PBKDF2, HKDF)
    DeriveKey(tools::DeriveArgs),
    /// The server's random number generator
    Rng {
        #[command(subcommand)]
        command: tools::RngCommand,
    },
    /// About the server
    Server {
        #[command(subcommand)]
        command: ServerCommand,
    },
    /// Log in with OAuth2 (authorization code + PKCE) and store the token in the configuration
    Login,
    /// Remove the stored token
    Logout,
}

#[derive(Debug, Args)]
pub struct LocateArgs {
    /// Tag the keys must carry (repeat: all of them)
    #[arg(short, long = "tag", required = true)]
    pub tags: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// The server's version
    Version,
    /// The KMIP protocol versions the server speaks
    DiscoverVersions,
    /// The operations and object types the server implements
    Query,
}

/// Key formats for export and import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyFormat {
    /// The key bytes
    Raw,
    /// The key bytes in base64 (the API token form)
    Base64,
    /// The KMIP JSON TTLV `SymmetricKey` object
    JsonTtlv,
}

/// What a command reports: a human line and a JSON object.
pub struct Outcome {
    pub text: String,
    pub json: Value,
}

impl Outcome {
    pub fn new(text: impl Into<String>, json: Value) -> Self {
        Self {
            text: text.into(),
            json,
        }
    }
}

pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    let path = config::location(cli.conf.as_deref())?;
    let mut conf = Conf::load(&path)?;
    match cli.command {
        Command::Login => return login::login(&mut conf).await,
        Command::Logout => return login::logout(&mut conf),
        _ => {}
    }
    let kms = Kms::new(&conf)?;
    match cli.command {
        Command::Sym { command } => sym::run(&kms, command).await,
        Command::AccessRights { command } => access::run(&kms, command).await,
        Command::Rsa { command } => asym::rsa(&kms, command).await,
        Command::Certificates { command } => certificates::run(&kms, command).await,
        Command::Ec { command } => asym::ec(&kms, command).await,
        Command::SecretData { command } => secret::secret_data(&kms, command).await,
        Command::OpaqueObject { command } => secret::opaque_object(&kms, command).await,
        Command::Attributes { command } => attributes::run(&kms, command).await,
        Command::Mac { command } => tools::mac(&kms, command).await,
        Command::DeriveKey(args) => tools::derive_key(&kms, args).await,
        Command::Locate(args) => {
            let request = json!({"tag": "Locate", "value": [
                {"tag": "Attributes", "value": [kmip::tags_attribute(&args.tags)]},
            ]});
            let response = kms.kmip(&request).await?;
            let ids: Vec<String> = response["value"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["tag"] == "UniqueIdentifier")
                .filter_map(|c| c["value"].as_str().map(str::to_owned))
                .collect();
            let text = if ids.is_empty() {
                "no key found".to_owned()
            } else {
                ids.join("\n")
            };
            Ok(Outcome::new(text, json!({"unique_identifiers": ids})))
        }
        Command::Server {
            command: ServerCommand::Version,
        } => {
            let version = kms.get("/version").await?;
            let text = version
                .as_str()
                .map_or_else(|| version.to_string(), str::to_owned);
            Ok(Outcome::new(text.clone(), json!({"version": text})))
        }
        Command::Hash(args) => tools::hash(&kms, args).await,
        Command::Rng { command } => tools::rng(&kms, command).await,
        Command::Server {
            command: ServerCommand::DiscoverVersions,
        } => tools::discover_versions(&kms).await,
        Command::Server {
            command: ServerCommand::Query,
        } => tools::query(&kms).await,
        Command::Login | Command::Logout => Err(CliError::Usage("unreachable".into())),
    }
}
