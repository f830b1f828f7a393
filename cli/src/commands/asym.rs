//! `ckms rsa` and `ckms ec`: key pairs (create, export, import, revoke, destroy), signatures
//! (sign, sign-verify) and, for RSA, encryption, with the reference CLI's syntax. Keys are
//! written in the formats openssl reads (PKCS#8, PKCS#1, SEC1, SPKI; PEM or DER).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Outcome;
use super::asym_keys;
use super::asym_keys::{AsymExportArgs, AsymImportArgs};
use super::crypt::{decrypted_name, encrypted_name, with_suffix};
use super::lifecycle::{DestroyArgs, RevokeArgs};
use super::objects::{Selector, read, write};
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip::{self, leaf};

/// RSA or EC: the two families share every command but creation and encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Rsa,
    Ec,
}

#[derive(Debug, Subcommand)]
pub enum RsaCommand {
    /// Create, export, import, revoke, destroy RSA key pairs
    Keys {
        #[command(subcommand)]
        command: RsaKeys,
    },
    /// Encrypt a file with an RSA public key (OAEP by default)
    Encrypt(RsaCryptArgs),
    /// Decrypt a file with an RSA private key
    Decrypt(RsaCryptArgs),
    /// Sign a file with a private key
    Sign(SignArgs),
    /// Verify a signature with a public (or private) key
    SignVerify(VerifyArgs),
}

#[derive(Debug, Subcommand)]
pub enum EcCommand {
    /// Create, export, import, revoke, destroy elliptic-curve key pairs
    Keys {
        #[command(subcommand)]
        command: EcKeys,
    },
    /// Sign a file with a private key (ECDSA with the curve's hash, or Ed25519)
    Sign(SignArgs),
    /// Verify a signature with a public (or private) key
    SignVerify(VerifyArgs),
}

#[derive(Debug, Subcommand)]
pub enum RsaKeys {
    /// Create an RSA key pair in the KMS
    Create {
        /// Modulus size: 2048, 3072 or 4096
        #[arg(short = 's', long, default_value_t = 4096)]
        size_in_bits: u32,
        #[command(flatten)]
        common: CreateArgs,
    },
    #[command(flatten)]
    Common(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum EcKeys {
    /// Create an elliptic-curve key pair in the KMS
    Create {
        /// The curve
        #[arg(short = 'c', long, value_enum, default_value = "nist-p256")]
        curve: Curve,
        #[command(flatten)]
        common: CreateArgs,
    },
    #[command(flatten)]
    Common(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a key to a file (PEM or DER for openssl, or the KMIP object)
    Export(AsymExportArgs),
    /// Import a private or public key from a file
    Import(AsymImportArgs),
    /// Revoke a key pair (both halves): it can no longer sign or encrypt
    Revoke(RevokeArgs),
    /// Destroy a key pair (both halves; revoke it first)
    Destroy(DestroyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Curve {
    NistP256,
    NistP384,
    NistP521,
    Ed25519,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Tag to attach to both keys (repeatable)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The private key may never leave the KMS in clear
    #[arg(long)]
    pub sensitive: bool,
    /// Store the private key wrapped by this key of the KMS
    #[arg(short = 'w', long)]
    pub wrapping_key_id: Option<String>,
    /// The identifier of the private key [default: chosen by the KMS; the public key's is
    /// this with `_pk`]
    pub private_key_id: Option<String>,
}

/// Export formats, as the reference CLI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignatureAlgorithm {
    /// RSASSA-PSS (RSA; the default)
    #[value(alias = "rsassapss")]
    RsassaPss,
    /// RSASSA-PKCS1-v1_5 (RSA)
    #[value(alias = "pkcs1v15")]
    RsassaPkcs1V15,
    /// ECDSA with the curve's hash (EC; the default)
    Ecdsa,
    /// Ed25519 (the default for an Ed25519 key)
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HashAlgorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    fn kmip(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }
}

/// What sign and sign-verify share: the key, the scheme, and what the file holds.
#[derive(Debug, Args)]
pub struct SignatureOptions {
    #[command(flatten)]
    pub key: Selector,
    /// Signature scheme [default: the key's]
    #[arg(short = 'a', long, value_enum)]
    pub signature_algorithm: Option<SignatureAlgorithm>,
    /// Hash (RSA: SHA-256 unless given; ECDSA: must be the curve's)
    #[arg(short = 's', long, value_enum)]
    pub hashing_algorithm: Option<HashAlgorithm>,
    /// The file holds a digest already computed, not the data
    #[arg(long)]
    pub digested: bool,
}

impl SignatureOptions {
    /// The key's identifier and the request fields for `data`.
    fn request(&self, data: &[u8]) -> Result<(String, Vec<Value>), CliError> {
        let mut fields = signature_params(self.signature_algorithm, self.hashing_algorithm)?;
        let tag = if self.digested {
            "DigestedData"
        } else {
            "Data"
        };
        fields.push(kmip::bytes(tag, data));
        Ok((self.key.id()?, fields))
    }
}

#[derive(Debug, Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub options: SignatureOptions,
    /// Output file [default: FILE.sig]
    #[arg(short = 'o', long)]
    pub output_file: Option<PathBuf>,
    /// The file to sign
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub options: SignatureOptions,
    /// The signed file
    pub file: PathBuf,
    /// The signature
    pub signature_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RsaEncryption {
    /// RSA-OAEP (the default)
    CkmRsaPkcsOaep,
    /// RSA PKCS#1 v1.5 (legacy)
    CkmRsaPkcs,
    /// A fresh AES key under RSA-OAEP, then the data wrapped with RFC 5649 (any size)
    CkmRsaAesKeyWrap,
}

#[derive(Debug, Args)]
pub struct RsaCryptArgs {
    #[command(flatten)]
    pub key: Selector,
    #[arg(short = 'e', long, value_enum, default_value = "ckm-rsa-pkcs-oaep")]
    pub encryption_algorithm: RsaEncryption,
    /// OAEP hash (OAEP and AES key wrap)
    #[arg(short = 's', long, value_enum, default_value = "sha256")]
    pub hashing_algorithm: HashAlgorithm,
    /// Output file [default: FILE.enc to encrypt, FILE without .enc (or FILE.plain) to decrypt]
    #[arg(short = 'o', long)]
    pub output_file: Option<PathBuf>,
    /// The file to read
    pub file: PathBuf,
}

pub async fn rsa(kms: &Kms, command: RsaCommand) -> Result<Outcome, CliError> {
    match command {
        RsaCommand::Keys {
            command:
                RsaKeys::Create {
                    size_in_bits,
                    common,
                },
        } => {
            let attributes = vec![
                leaf("CryptographicAlgorithm", "Enumeration", json!("RSA")),
                leaf("CryptographicLength", "Integer", json!(size_in_bits)),
            ];
            create(kms, Family::Rsa, attributes, common).await
        }
        RsaCommand::Keys {
            command: RsaKeys::Common(command),
        } => asym_keys::keys(kms, command).await,
        RsaCommand::Encrypt(args) => rsa_crypt(kms, args, true).await,
        RsaCommand::Decrypt(args) => rsa_crypt(kms, args, false).await,
        RsaCommand::Sign(args) => sign(kms, args).await,
        RsaCommand::SignVerify(args) => verify(kms, args).await,
    }
}

pub async fn ec(kms: &Kms, command: EcCommand) -> Result<Outcome, CliError> {
    match command {
        EcCommand::Keys {
            command: EcKeys::Create { curve, common },
        } => {
            let (algorithm, name) = match curve {
                Curve::NistP256 => ("ECDH", "P256"),
                Curve::NistP384 => ("ECDH", "P384"),
                Curve::NistP521 => ("ECDH", "P521"),
                Curve::Ed25519 => ("Ed25519", "CURVEED25519"),
            };
            let attributes = vec![
                leaf("CryptographicAlgorithm", "Enumeration", json!(algorithm)),
                json!({"tag": "CryptographicDomainParameters", "value": [
                    leaf("RecommendedCurve", "Enumeration", json!(name)),
                ]}),
            ];
            create(kms, Family::Ec, attributes, common).await
        }
        EcCommand::Keys {
            command: EcKeys::Common(command),
        } => asym_keys::keys(kms, command).await,
        EcCommand::Sign(args) => sign(kms, args).await,
        EcCommand::SignVerify(args) => verify(kms, args).await,
    }
}

async fn create(
    kms: &Kms,
    family: Family,
    mut common: Vec<Value>,
    args: CreateArgs,
) -> Result<Outcome, CliError> {
    common.insert(0, leaf("ActivationDate", "DateTime", json!(kmip::now())));
    common.push(kmip::tags_attribute(&args.tags));
    let mut private = Vec::new();
    if let Some(id) = &args.private_key_id {
        private.push(kmip::text("UniqueIdentifier", id));
    }
    if args.sensitive {
        private.push(leaf("Sensitive", "Boolean", json!(true)));
    }
    if let Some(kek) = &args.wrapping_key_id {
        private.push(kmip::vendor("wrapping_key_id", kek));
    }
    let request = json!({"tag": "CreateKeyPair", "value": [
        {"tag": "CommonAttributes", "value": common},
        {"tag": "PrivateKeyAttributes", "value": private},
    ]});
    let response = kms.kmip(&request).await?;
    let sk = kmip::text_field(&response, "PrivateKeyUniqueIdentifier")?;
    let pk = kmip::text_field(&response, "PublicKeyUniqueIdentifier")?;
    let noun = match family {
        Family::Rsa => "RSA",
        Family::Ec => "EC",
    };
    Ok(Outcome::new(
        format!(
            "The {noun} key pair has been created.\n  Public key unique identifier: {pk}\n  Private key unique identifier: {sk}"
        ),
        json!({"private_key_unique_identifier": sk, "public_key_unique_identifier": pk}),
    ))
}

fn signature_params(
    algorithm: Option<SignatureAlgorithm>,
    hash: Option<HashAlgorithm>,
) -> Result<Vec<Value>, CliError> {
    let mut params = Vec::new();
    match algorithm {
        None | Some(SignatureAlgorithm::Ecdsa | SignatureAlgorithm::Ed25519) => {}
        Some(SignatureAlgorithm::RsassaPss) => {
            let h = hash.unwrap_or(HashAlgorithm::Sha256).kmip();
            params.push(leaf(
                "DigitalSignatureAlgorithm",
                "Enumeration",
                json!("RSASSAPSS"),
            ));
            params.push(leaf(
                "MaskGeneratorHashingAlgorithm",
                "Enumeration",
                json!(h),
            ));
        }
        Some(SignatureAlgorithm::RsassaPkcs1V15) => {
            let dsa = match hash.unwrap_or(HashAlgorithm::Sha256) {
                HashAlgorithm::Sha256 => "SHA256WithRSAEncryption",
                HashAlgorithm::Sha384 => "SHA384WithRSAEncryption",
                HashAlgorithm::Sha512 => "SHA512WithRSAEncryption",
                HashAlgorithm::Sha1 => {
                    return Err(CliError::Usage("SHA-1 signatures are not made".into()));
                }
            };
            params.push(leaf("DigitalSignatureAlgorithm", "Enumeration", json!(dsa)));
        }
    }
    if let Some(h) = hash {
        params.insert(0, leaf("HashingAlgorithm", "Enumeration", json!(h.kmip())));
    }
    Ok(if params.is_empty() {
        vec![]
    } else {
        vec![json!({"tag": "CryptographicParameters", "value": params})]
    })
}

async fn sign(kms: &Kms, args: SignArgs) -> Result<Outcome, CliError> {
    let data = Zeroizing::new(read(&args.file)?);
    let (id, extra) = args.options.request(&data)?;
    let response = kms.kmip(&kmip::by_id("Sign", &id, extra)).await?;
    let signature = kmip::bytes_field(&response, "SignatureData")?;
    let output = args
        .output_file
        .unwrap_or_else(|| with_suffix(&args.file, ".sig"));
    write(&output, &signature, true)?;
    Ok(Outcome::new(
        format!("The signature is available at {}", output.display()),
        json!({"output_file": output, "bytes": signature.len()}),
    ))
}

async fn verify(kms: &Kms, args: VerifyArgs) -> Result<Outcome, CliError> {
    let data = Zeroizing::new(read(&args.file)?);
    let signature = read(&args.signature_file)?;
    let (id, mut extra) = args.options.request(&data)?;
    extra.push(kmip::bytes("SignatureData", &signature));
    let response = kms
        .kmip(&kmip::by_id("SignatureVerify", &id, extra))
        .await?;
    let validity = kmip::text_field(&response, "ValidityIndicator")?;
    if validity != "Valid" {
        return Err(CliError::Usage(format!(
            "Signature verification is {validity}: {} does not match {}",
            args.signature_file.display(),
            args.file.display()
        )));
    }
    Ok(Outcome::new(
        "Signature verification is Valid",
        json!({"validity": validity}),
    ))
}

async fn rsa_crypt(kms: &Kms, args: RsaCryptArgs, encrypt: bool) -> Result<Outcome, CliError> {
    let id = args.key.id()?;
    let hash = leaf(
        "HashingAlgorithm",
        "Enumeration",
        json!(args.hashing_algorithm.kmip()),
    );
    let params = match args.encryption_algorithm {
        RsaEncryption::CkmRsaPkcsOaep => {
            vec![leaf("PaddingMethod", "Enumeration", json!("OAEP")), hash]
        }
        RsaEncryption::CkmRsaPkcs => vec![leaf("PaddingMethod", "Enumeration", json!("PKCS1v15"))],
        RsaEncryption::CkmRsaAesKeyWrap => {
            vec![leaf("PaddingMethod", "Enumeration", json!("None")), hash]
        }
    };
    let mut params = params;
    params.push(leaf("CryptographicAlgorithm", "Enumeration", json!("RSA")));
    let data = Zeroizing::new(read(&args.file)?);
    let (op, output) = if encrypt {
        (
            "Encrypt",
            args.output_file
                .unwrap_or_else(|| encrypted_name(&args.file)),
        )
    } else {
        (
            "Decrypt",
            args.output_file
                .unwrap_or_else(|| decrypted_name(&args.file)),
        )
    };
    let request = kmip::by_id(
        op,
        &id,
        vec![
            json!({"tag": "CryptographicParameters", "value": params}),
            kmip::bytes("Data", &data),
        ],
    );
    let response = kms.kmip(&request).await?;
    let out = Zeroizing::new(kmip::bytes_field(&response, "Data")?);
    write(&output, &out, true)?;
    let verb = if encrypt { "encrypted" } else { "decrypted" };
    Ok(Outcome::new(
        format!("The {verb} file is available at {}", output.display()),
        json!({"output_file": output, "bytes": out.len()}),
    ))
}
