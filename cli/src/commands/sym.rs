//! `ckms sym`: create, export, import, revoke and destroy symmetric keys; encrypt and decrypt
//! files. A file is encrypted by the KMS (AES-256-GCM, output `nonce ‖ ciphertext ‖ tag`) up to
//! [`MAX_SERVER_SIDE`]; with `--envelope`, any size is encrypted here under a fresh data key
//! that the KMS key wraps (see [`ENVELOPE_MAGIC`]).

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::files::{Existing, write_private};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{KeyFormat, Outcome};
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip;

/// Largest file the KMS encrypts itself (its JSON request carries the data in hex).
pub const MAX_SERVER_SIDE: u64 = 16 * 1024 * 1024;
/// First bytes of an envelope file: magic ‖ u32 length of the wrapped data key ‖ wrapped key
/// (nonce ‖ ciphertext ‖ tag, by the KMS) ‖ nonce ‖ ciphertext ‖ tag (here, AES-256-GCM).
pub const ENVELOPE_MAGIC: &[u8; 8] = b"CKMSENV1";
const TAG_LEN: usize = 16;
const WRAP_AAD: &[u8] = b"ckms envelope v1";

#[derive(Debug, Subcommand)]
pub enum SymCommand {
    /// Create, export, import, revoke, destroy keys
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Encrypt a file with a key of the KMS (AES-256-GCM)
    Encrypt(CryptArgs),
    /// Decrypt a file encrypted by `ckms sym encrypt`
    Decrypt(CryptArgs),
}

#[derive(Debug, Args)]
pub struct KeySelector {
    /// The key's unique identifier
    #[arg(short = 'k', long)]
    pub key_id: Option<String>,
    /// Select the key by tag instead (repeat: all of them)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
}

impl KeySelector {
    fn id(&self) -> Result<String, CliError> {
        kmip::identifier(self.key_id.as_deref(), &self.tags)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReasonCode {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl ReasonCode {
    fn kmip(self) -> &'static str {
        match self {
            Self::Unspecified => "Unspecified",
            Self::KeyCompromise => "KeyCompromise",
            Self::CaCompromise => "CACompromise",
            Self::AffiliationChanged => "AffiliationChanged",
            Self::Superseded => "Superseded",
            Self::CessationOfOperation => "CessationOfOperation",
            Self::PrivilegeWithdrawn => "PrivilegeWithdrawn",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an AES key in the KMS
    Create {
        /// Key size in bits (128, 192 or 256)
        #[arg(short = 'l', long, default_value_t = 256)]
        number_of_bits: u32,
        /// Tag to attach (repeatable)
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        /// The identifier to give the key [default: chosen by the KMS]
        key_id: Option<String>,
    },
    /// Write a key to a file
    Export {
        #[command(flatten)]
        key: KeySelector,
        /// Format of the file
        #[arg(short = 'f', long, value_enum, default_value = "json-ttlv")]
        key_format: KeyFormat,
        /// The file to write
        file: PathBuf,
    },
    /// Import a key from a file
    Import {
        /// Format of the file
        #[arg(short = 'f', long, value_enum, default_value = "json-ttlv")]
        key_format: KeyFormat,
        /// Tag to attach (repeatable)
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        /// The file to read
        file: PathBuf,
        /// The identifier to give the key [default: chosen by the KMS]
        key_id: Option<String>,
    },
    /// Revoke a key: it can no longer encrypt (it can still decrypt)
    Revoke {
        #[command(flatten)]
        key: KeySelector,
        /// Why
        #[arg(short = 'r', long, value_enum, default_value = "unspecified")]
        reason_code: ReasonCode,
        /// A message recorded with the revocation
        message: String,
    },
    /// Destroy a key (revoke it first)
    Destroy {
        #[command(flatten)]
        key: KeySelector,
        /// Also remove it from the database
        #[arg(long)]
        remove: bool,
    },
    /// Activate a PreActive key now
    Activate {
        #[command(flatten)]
        key: KeySelector,
    },
    /// Replace a key with a new one (the old one is deactivated; grants and tags move on)
    ReKey {
        #[command(flatten)]
        key: KeySelector,
    },
}

#[derive(Debug, Args)]
pub struct CryptArgs {
    #[command(flatten)]
    pub key: KeySelector,
    /// Additional authenticated data, in hexadecimal (the same must be given to decrypt)
    #[arg(short = 'a', long, value_name = "HEX")]
    pub authentication_data: Option<String>,
    /// Output file [default: FILE.enc to encrypt, FILE without .enc (or FILE.plain) to decrypt]
    #[arg(short = 'o', long)]
    pub output_file: Option<PathBuf>,
    /// Encrypt here under a fresh data key wrapped by the KMS key (any file size)
    #[arg(long)]
    pub envelope: bool,
    /// Overwrite the output file if it exists (decrypt refuses to otherwise)
    #[arg(long)]
    pub force: bool,
    /// The file to read
    pub file: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::io(&format!("cannot read {}", path.display()), e))
}

/// Writes an output file (see [`crate::files`]): replaced when `replace`, else refused when
/// it exists.
fn write(path: &Path, data: &[u8], replace: bool) -> Result<(), CliError> {
    let existing = if replace {
        Existing::Replace
    } else {
        Existing::Keep
    };
    write_private(path, data, existing).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => CliError::Usage(format!(
            "{} exists: pass --force to overwrite it",
            path.display()
        )),
        _ => CliError::io(&format!("cannot write {}", path.display()), e),
    })
}

fn random<const N: usize>() -> Result<[u8; N], CliError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CliError::Io("no randomness available".into()))?;
    Ok(out)
}

pub async fn run(kms: &Kms, command: SymCommand) -> Result<Outcome, CliError> {
    match command {
        SymCommand::Keys { command } => keys(kms, command).await,
        SymCommand::Encrypt(args) => encrypt(kms, args).await,
        SymCommand::Decrypt(args) => decrypt(kms, args).await,
    }
}

/// Runs an operation that takes only a uid; the uid it answers.
async fn by_id(kms: &Kms, operation: &str, id: &str) -> Result<String, CliError> {
    let response = kms.kmip(&kmip::by_id(operation, id, vec![])).await?;
    kmip::text_field(&response, "UniqueIdentifier")
}

async fn keys(kms: &Kms, command: KeysCommand) -> Result<Outcome, CliError> {
    match command {
        KeysCommand::Create {
            number_of_bits,
            tags,
            key_id,
        } => {
            if ![128, 192, 256].contains(&number_of_bits) {
                return Err(CliError::Usage(format!(
                    "--number-of-bits {number_of_bits}: AES keys are 128, 192 or 256 bits"
                )));
            }
            let response = kms
                .kmip(&kmip::create(number_of_bits, &tags, key_id.as_deref()))
                .await?;
            let uid = kmip::text_field(&response, "UniqueIdentifier")?;
            Ok(Outcome::new(
                format!("The symmetric key was created with identifier {uid}"),
                json!({"unique_identifier": uid}),
            ))
        }
        KeysCommand::Export {
            key,
            key_format,
            file,
        } => {
            let id = key.id()?;
            let response = kms
                .kmip(&kmip::by_id(
                    "Get",
                    &id,
                    vec![kmip::leaf(
                        "KeyWrapType",
                        "Enumeration",
                        json!("AsRegistered"),
                    )],
                ))
                .await?;
            let uid = kmip::text_field(&response, "UniqueIdentifier")?;
            match key_format {
                KeyFormat::JsonTtlv => {
                    let node = kmip::field(&response, "SymmetricKey").ok_or_else(|| {
                        CliError::Protocol("no SymmetricKey in the answer".into())
                    })?;
                    let text = serde_json::to_string_pretty(node)
                        .map_err(|e| CliError::Protocol(e.to_string()))?;
                    write(&file, text.as_bytes(), true)?;
                }
                KeyFormat::Raw => {
                    let key = Zeroizing::new(kmip::key_material(&response)?);
                    write(&file, &key, true)?;
                }
                KeyFormat::Base64 => {
                    let key = Zeroizing::new(kmip::key_material(&response)?);
                    write(&file, Zeroizing::new(B64.encode(&*key)).as_bytes(), true)?;
                }
            }
            Ok(Outcome::new(
                format!("The key {uid} was exported to {}", file.display()),
                json!({"unique_identifier": uid, "file": file}),
            ))
        }
        KeysCommand::Import {
            key_format,
            tags,
            file,
            key_id,
        } => {
            let data = Zeroizing::new(read(&file)?);
            let key = Zeroizing::new(match key_format {
                KeyFormat::Raw => data.to_vec(),
                KeyFormat::Base64 => B64
                    .decode(String::from_utf8_lossy(&data).trim())
                    .map_err(|e| CliError::Usage(format!("{}: not base64: {e}", file.display())))?,
                KeyFormat::JsonTtlv => {
                    let node: Value = serde_json::from_slice(&data).map_err(|e| {
                        CliError::Usage(format!("{}: not JSON TTLV: {e}", file.display()))
                    })?;
                    kmip::key_material(&node)?
                }
            });
            if ![16, 24, 32].contains(&key.len()) {
                return Err(CliError::Usage(format!(
                    "{}: {} bytes is not an AES key (16, 24 or 32)",
                    file.display(),
                    key.len()
                )));
            }
            let response = kms
                .kmip(&kmip::import(&key, key_id.as_deref(), &tags))
                .await?;
            let uid = kmip::text_field(&response, "UniqueIdentifier")?;
            Ok(Outcome::new(
                format!("The key was imported with identifier {uid}"),
                json!({"unique_identifier": uid}),
            ))
        }
        KeysCommand::Revoke {
            key,
            reason_code,
            message,
        } => {
            let id = key.id()?;
            let reason = json!({"tag": "RevocationReason", "value": [
                kmip::leaf("RevocationReasonCode", "Enumeration", json!(reason_code.kmip())),
                kmip::text("RevocationMessage", &message),
            ]});
            let response = kms
                .kmip(&kmip::by_id(
                    "Revoke",
                    &id,
                    vec![reason, kmip::leaf("Cascade", "Boolean", json!(true))],
                ))
                .await?;
            let uid = kmip::text_field(&response, "UniqueIdentifier")?;
            Ok(Outcome::new(
                format!("The key {uid} was revoked"),
                json!({"unique_identifier": uid}),
            ))
        }
        KeysCommand::Activate { key } => {
            let uid = by_id(kms, "Activate", &key.id()?).await?;
            Ok(Outcome::new(
                format!("The key {uid} was activated"),
                json!({"unique_identifier": uid}),
            ))
        }
        KeysCommand::ReKey { key } => {
            let id = key.id()?;
            let uid = by_id(kms, "ReKey", &id).await?;
            Ok(Outcome::new(
                format!("The key {id} was replaced by the key {uid}"),
                json!({"unique_identifier": uid}),
            ))
        }
        KeysCommand::Destroy { key, remove } => {
            let id = key.id()?;
            let attributes = kms.kmip(&kmip::by_id("GetAttributes", &id, vec![])).await?;
            let object_type = kmip::find(&attributes, "ObjectType")
                .and_then(|o| o["value"].as_str())
                .unwrap_or("");
            if object_type != "SymmetricKey" {
                return Err(CliError::Usage(format!(
                    "{id} is not a symmetric key ({object_type:?})"
                )));
            }
            let mut extra = Vec::new();
            if remove {
                extra.push(kmip::leaf("Remove", "Boolean", json!(true)));
            }
            extra.push(kmip::leaf("Cascade", "Boolean", json!(true)));
            extra.push(kmip::leaf(
                "ExpectedObjectType",
                "Enumeration",
                json!("SymmetricKey"),
            ));
            let response = kms.kmip(&kmip::by_id("Destroy", &id, extra)).await?;
            let uid = kmip::text_field(&response, "UniqueIdentifier")?;
            Ok(Outcome::new(
                format!("The key {uid} was destroyed"),
                json!({"unique_identifier": uid, "removed": remove}),
            ))
        }
    }
}

/// Exported key files are readable by their owner only.
fn aad(args: &CryptArgs) -> Result<Option<Vec<u8>>, CliError> {
    args.authentication_data
        .as_deref()
        .map(|h| {
            kmip::unhex(h)
                .map_err(|_| CliError::Usage("--authentication-data must be hexadecimal".into()))
        })
        .transpose()
}

/// AES-256-GCM by the KMS: (nonce, ciphertext, tag).
async fn kms_encrypt(
    kms: &Kms,
    id: &str,
    data: &[u8],
    aad: Option<&[u8]>,
) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>), CliError> {
    let response = kms.kmip(&kmip::encrypt(id, data, aad)).await?;
    Ok((
        kmip::bytes_field(&response, "IVCounterNonce")?,
        kmip::bytes_field(&response, "Data")?,
        kmip::bytes_field(&response, "AuthenticatedEncryptionTag")?,
    ))
}

async fn kms_decrypt(
    kms: &Kms,
    id: &str,
    sealed: &[u8],
    aad: Option<&[u8]>,
) -> Result<Vec<u8>, CliError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CliError::Usage(
            "the file is too short to be encrypted data".into(),
        ));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (data, tag) = rest.split_at(rest.len() - TAG_LEN);
    let response = kms.kmip(&kmip::decrypt(id, nonce, data, tag, aad)).await?;
    kmip::bytes_field(&response, "Data")
}

async fn encrypt(kms: &Kms, args: CryptArgs) -> Result<Outcome, CliError> {
    let id = args.key.id()?;
    let aad = aad(&args)?;
    let size = std::fs::metadata(&args.file)
        .map_err(|e| CliError::io(&format!("cannot read {}", args.file.display()), e))?
        .len();
    if !args.envelope && size > MAX_SERVER_SIDE {
        return Err(CliError::Usage(format!(
            "{} is {size} bytes; the KMS encrypts at most {MAX_SERVER_SIDE} bytes itself: add --envelope to encrypt it here under a data key wrapped by the KMS key",
            args.file.display()
        )));
    }
    let mut data = read(&args.file)?;
    let output = args.output_file.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".enc");
        PathBuf::from(name)
    });
    let sealed = if args.envelope {
        let dek = Zeroizing::new(random::<32>()?);
        let (wrap_nonce, wrapped, wrap_tag) = kms_encrypt(kms, &id, &*dek, Some(WRAP_AAD)).await?;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &*dek)
                .map_err(|_| CliError::Io("cannot make a data key".into()))?,
        );
        let nonce = random::<NONCE_LEN>()?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_deref().unwrap_or_default()),
            &mut data,
        )
        .map_err(|_| CliError::Io("local encryption failed".into()))?;
        let wrapped_len = wrap_nonce.len() + wrapped.len() + wrap_tag.len();
        let mut out = Vec::with_capacity(12 + wrapped_len + NONCE_LEN + data.len());
        out.extend_from_slice(ENVELOPE_MAGIC);
        out.extend_from_slice(&u32::try_from(wrapped_len).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&wrap_tag);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        out
    } else {
        let (nonce, ciphertext, tag) = kms_encrypt(kms, &id, &data, aad.as_deref()).await?;
        [nonce, ciphertext, tag].concat()
    };
    write(&output, &sealed, true)?;
    Ok(Outcome::new(
        format!("The encrypted file is available at {}", output.display()),
        json!({"output_file": output, "envelope": args.envelope, "bytes": sealed.len()}),
    ))
}

async fn decrypt(kms: &Kms, args: CryptArgs) -> Result<Outcome, CliError> {
    let id = args.key.id()?;
    let aad = aad(&args)?;
    let sealed = read(&args.file)?;
    let output = args.output_file.clone().unwrap_or_else(|| {
        match args.file.extension().and_then(|e| e.to_str()) {
            Some("enc") => args.file.with_extension(""),
            _ => {
                let mut name = args.file.clone().into_os_string();
                name.push(".plain");
                PathBuf::from(name)
            }
        }
    });
    if !args.force && std::fs::symlink_metadata(&output).is_ok() {
        return Err(CliError::Usage(format!(
            "{} exists: pass --force to overwrite it",
            output.display()
        )));
    }
    let envelope = sealed.starts_with(ENVELOPE_MAGIC);
    let plain = if envelope {
        let header = ENVELOPE_MAGIC.len() + 4;
        let truncated = || CliError::Usage(format!("{}: truncated envelope", args.file.display()));
        let len_bytes: [u8; 4] = sealed
            .get(ENVELOPE_MAGIC.len()..header)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(truncated)?;
        let wrapped_len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
        let wrapped = sealed
            .get(header..header.saturating_add(wrapped_len))
            .ok_or_else(truncated)?;
        let dek = Zeroizing::new(kms_decrypt(kms, &id, wrapped, Some(WRAP_AAD)).await?);
        let body = sealed
            .get(header + wrapped_len..)
            .filter(|b| b.len() >= NONCE_LEN + TAG_LEN)
            .ok_or_else(truncated)?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &dek).map_err(|_| {
            CliError::Protocol("the wrapped data key is not an AES-256 key".into())
        })?);
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| truncated())?;
        let mut buffer = ciphertext.to_vec();
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_deref().unwrap_or_default()),
                &mut buffer,
            )
            .map_err(|_| {
                CliError::Usage(format!(
                    "{}: authentication failed (wrong additional data, or the file was modified)",
                    args.file.display()
                ))
            })?
            .len();
        buffer.truncate(plain_len);
        buffer
    } else {
        kms_decrypt(kms, &id, &sealed, aad.as_deref()).await?
    };
    write(&output, &plain, args.force)?;
    Ok(Outcome::new(
        format!("The decrypted file is available at {}", output.display()),
        json!({"output_file": output, "envelope": envelope, "bytes": plain.len()}),
    ))
}
