//! `ckms sym encrypt|decrypt`, with the reference CLI's options. By default the KMS encrypts
//! the file (`-d`: AES-GCM, AES-CBC, AES-GCM-SIV, ChaCha20-Poly1305; output
//! `nonce ‖ ciphertext ‖ tag`) up to [`MAX_SERVER_SIDE`]. With `--envelope` or `-e`, the file
//! is encrypted here in constant memory under a fresh data key that the KMS key wraps with
//! the `-e` algorithm (see [`super::envelope`]).

use std::path::PathBuf;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Outcome;
use super::envelope;
use super::objects::{Selector, read, write};
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip::{self, leaf};

/// Largest file the KMS encrypts itself (its JSON request carries the data in hex).
pub const MAX_SERVER_SIDE: u64 = 16 * 1024 * 1024;

/// How the KMS encrypts data (`-d`), as the reference CLI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataAlgorithm {
    AesGcm,
    AesCbc,
    /// Refused by the KMS (XTS is not implemented)
    AesXts,
    AesGcmSiv,
    Chacha20Poly1305,
}

/// How the KMS key wraps the data key of an envelope (`-e`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyEncryption {
    AesGcm,
    /// RFC 5649 (AES key wrap with padding)
    Rfc5649,
    /// RFC 3394 (AES key wrap)
    Rfc3394,
    AesGcmSiv,
}

/// A KMS encryption mode: its parameters and the sizes of the nonce and tag it returns.
pub struct Mode {
    params: Value,
    nonce: usize,
    tag: usize,
}

fn params(mode: Option<&str>, algorithm: &str) -> Value {
    let mut children: Vec<Value> = mode
        .map(|m| leaf("BlockCipherMode", "Enumeration", json!(m)))
        .into_iter()
        .collect();
    children.push(leaf(
        "CryptographicAlgorithm",
        "Enumeration",
        json!(algorithm),
    ));
    json!({"tag": "CryptographicParameters", "value": children})
}

impl DataAlgorithm {
    pub fn mode(self) -> Mode {
        let aead = |m: &str| Mode {
            params: params(Some(m), "AES"),
            nonce: 12,
            tag: 16,
        };
        match self {
            Self::AesGcm => aead("GCM"),
            Self::AesGcmSiv => aead("GCMSIV"),
            Self::AesCbc => Mode {
                params: params(Some("CBC"), "AES"),
                nonce: 16,
                tag: 0,
            },
            Self::AesXts => Mode {
                params: params(Some("XTS"), "AES"),
                nonce: 16,
                tag: 0,
            },
            Self::Chacha20Poly1305 => Mode {
                params: params(None, "ChaCha20Poly1305"),
                nonce: 12,
                tag: 16,
            },
        }
    }
}

impl KeyEncryption {
    pub fn mode(self) -> Mode {
        let wrap = |m: &str| Mode {
            params: params(Some(m), "AES"),
            nonce: 0,
            tag: 0,
        };
        match self {
            Self::AesGcm => DataAlgorithm::AesGcm.mode(),
            Self::AesGcmSiv => DataAlgorithm::AesGcmSiv.mode(),
            Self::Rfc5649 => wrap("AESKeyWrapPadding"),
            Self::Rfc3394 => wrap("NISTKeyWrap"),
        }
    }

    /// The byte an envelope records it with.
    pub fn id(self) -> u8 {
        match self {
            Self::AesGcm => 1,
            Self::Rfc5649 => 2,
            Self::Rfc3394 => 3,
            Self::AesGcmSiv => 4,
        }
    }

    pub fn from_id(id: u8) -> Option<Self> {
        [Self::AesGcm, Self::Rfc5649, Self::Rfc3394, Self::AesGcmSiv]
            .into_iter()
            .find(|k| k.id() == id)
    }
}

#[derive(Debug, Args)]
pub struct CryptArgs {
    #[command(flatten)]
    pub key: Selector,
    /// How the KMS encrypts the data (without --envelope)
    #[arg(short = 'd', long, value_enum, default_value = "aes-gcm")]
    pub data_encryption_algorithm: DataAlgorithm,
    /// Encrypt here under a data key that the KMS key wraps with this algorithm (implies
    /// --envelope)
    #[arg(short = 'e', long, value_enum)]
    pub key_encryption_algorithm: Option<KeyEncryption>,
    /// The nonce or IV for the KMS to use, in hexadecimal [default: random]
    #[arg(short = 'n', long, value_name = "HEX", conflicts_with = "envelope")]
    pub nonce: Option<String>,
    /// Additional authenticated data, in hexadecimal (the same must be given to decrypt)
    #[arg(short = 'a', long, value_name = "HEX")]
    pub authentication_data: Option<String>,
    /// Output file [default: FILE.enc to encrypt, FILE without .enc (or FILE.plain) to decrypt]
    #[arg(short = 'o', long)]
    pub output_file: Option<PathBuf>,
    /// Encrypt here, in constant memory, under a fresh data key wrapped by the KMS key (any
    /// file size)
    #[arg(long)]
    pub envelope: bool,
    /// Overwrite the output file if it exists (decrypt refuses to otherwise)
    #[arg(long)]
    pub force: bool,
    /// The file to read
    pub file: PathBuf,
}

pub fn random<const N: usize>() -> Result<[u8; N], CliError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CliError::Io("no randomness available".into()))?;
    Ok(out)
}

fn hex_option(text: Option<&str>, what: &str) -> Result<Option<Vec<u8>>, CliError> {
    text.map(|h| kmip::unhex(h).map_err(|_| CliError::Usage(format!("{what} must be hexadecimal"))))
        .transpose()
}

/// Encrypted by the KMS: nonce ‖ ciphertext ‖ tag (those the mode has).
pub async fn kms_encrypt(
    kms: &Kms,
    id: &str,
    mode: Mode,
    data: &[u8],
    nonce: Option<&[u8]>,
    aad: &[u8],
) -> Result<Vec<u8>, CliError> {
    let aad = (!aad.is_empty()).then_some(aad);
    let response = kms
        .kmip(&kmip::encrypt(id, mode.params, data, nonce, aad))
        .await?;
    let part = |tag: &str, len: usize| {
        if len == 0 {
            Ok(Vec::new())
        } else {
            kmip::bytes_field(&response, tag)
        }
    };
    // KMIP returns the nonce only when the server chose it.
    let nonce = match nonce {
        Some(given) => given.to_vec(),
        None => part("IVCounterNonce", mode.nonce)?,
    };
    Ok([
        nonce,
        kmip::bytes_field(&response, "Data")?,
        part("AuthenticatedEncryptionTag", mode.tag)?,
    ]
    .concat())
}

pub async fn kms_decrypt(
    kms: &Kms,
    id: &str,
    mode: Mode,
    sealed: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CliError> {
    if sealed.len() < mode.nonce + mode.tag {
        return Err(CliError::Usage(
            "the file is too short to be encrypted data".into(),
        ));
    }
    let (nonce, rest) = sealed.split_at(mode.nonce);
    let (data, tag) = rest.split_at(rest.len() - mode.tag);
    let aad = (!aad.is_empty()).then_some(aad);
    let response = kms
        .kmip(&kmip::decrypt(id, mode.params, [nonce, data, tag], aad))
        .await?;
    kmip::bytes_field(&response, "Data")
}

/// FILE.enc.
pub fn encrypted_name(file: &std::path::Path) -> PathBuf {
    with_suffix(file, ".enc")
}

/// FILE without .enc, or FILE.plain.
pub fn decrypted_name(file: &std::path::Path) -> PathBuf {
    match file.extension().and_then(|e| e.to_str()) {
        Some("enc") => file.with_extension(""),
        _ => with_suffix(file, ".plain"),
    }
}

pub fn with_suffix(file: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = file.to_path_buf().into_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

pub async fn encrypt(kms: &Kms, args: CryptArgs) -> Result<Outcome, CliError> {
    let id = args.key.id()?;
    let aad = hex_option(args.authentication_data.as_deref(), "--authentication-data")?
        .unwrap_or_default();
    let output = args
        .output_file
        .clone()
        .unwrap_or_else(|| encrypted_name(&args.file));
    if args.envelope || args.key_encryption_algorithm.is_some() {
        if args.data_encryption_algorithm != DataAlgorithm::AesGcm {
            return Err(CliError::Usage(
                "an envelope encrypts here with AES-256-GCM chunks: -d applies to encryption by the KMS (without --envelope or -e)".into(),
            ));
        }
        let wrap = args
            .key_encryption_algorithm
            .unwrap_or(KeyEncryption::AesGcm);
        return envelope::encrypt(kms, &id, wrap, &args.file, &output, &aad).await;
    }
    let size = std::fs::metadata(&args.file)
        .map_err(|e| CliError::io(&format!("cannot read {}", args.file.display()), e))?
        .len();
    if size > MAX_SERVER_SIDE {
        return Err(CliError::Usage(format!(
            "{} is {size} bytes; the KMS encrypts at most {MAX_SERVER_SIDE} bytes itself: add --envelope to encrypt it here under a data key wrapped by the KMS key",
            args.file.display()
        )));
    }
    let nonce = hex_option(args.nonce.as_deref(), "--nonce")?;
    let mode = args.data_encryption_algorithm.mode();
    let data = Zeroizing::new(read(&args.file)?);
    let sealed = kms_encrypt(kms, &id, mode, &data, nonce.as_deref(), &aad).await?;
    write(&output, &sealed, true)?;
    Ok(Outcome::new(
        format!("The encrypted file is available at {}", output.display()),
        json!({"output_file": output, "envelope": false, "bytes": sealed.len()}),
    ))
}

pub async fn decrypt(kms: &Kms, args: CryptArgs) -> Result<Outcome, CliError> {
    let id = args.key.id()?;
    let aad = hex_option(args.authentication_data.as_deref(), "--authentication-data")?
        .unwrap_or_default();
    let output = args
        .output_file
        .clone()
        .unwrap_or_else(|| decrypted_name(&args.file));
    if !args.force && std::fs::symlink_metadata(&output).is_ok() {
        return Err(CliError::Usage(format!(
            "{} exists: pass --force to overwrite it",
            output.display()
        )));
    }
    // What encryption chose travels in the file; options that say otherwise are refused.
    if args.nonce.is_some() {
        return Err(CliError::Usage(
            "--nonce applies to encrypt: decrypt reads the nonce from the file".into(),
        ));
    }
    match (
        envelope::key_encryption(&args.file)?,
        args.key_encryption_algorithm,
    ) {
        (Some(Some(found)), Some(asked)) if found != asked => {
            return Err(CliError::Usage(format!(
                "{}: its data key was wrapped with {found:?}, not {asked:?}",
                args.file.display()
            )));
        }
        (Some(_), _) => {
            return envelope::decrypt(kms, &id, &args.file, &output, &aad, args.force).await;
        }
        (None, asked) if asked.is_some() || args.envelope => {
            return Err(CliError::Usage(format!(
                "{} is not an envelope (it was encrypted by the KMS: drop --envelope/-e)",
                args.file.display()
            )));
        }
        (None, _) => {}
    }
    let sealed = read(&args.file)?;
    let mode = args.data_encryption_algorithm.mode();
    let plain = Zeroizing::new(kms_decrypt(kms, &id, mode, &sealed, &aad).await?);
    write(&output, &plain, args.force)?;
    Ok(Outcome::new(
        format!("The decrypted file is available at {}", output.display()),
        json!({"output_file": output, "envelope": false, "bytes": plain.len()}),
    ))
}
