//! `ckms rsa|ec keys export|import|revoke|destroy`: a key pair's halves in the forms openssl
//! reads (PKCS#8, PKCS#1, SEC1, SPKI; PEM or DER) or as the KMIP object.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Outcome;
use super::asym::KeyCommand;
use super::lifecycle;
use super::objects::{self, Kind, Selector, read, write};
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip::{self, leaf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The KMIP object (JSON TTLV)
    JsonTtlv,
    Pkcs8Pem,
    Pkcs8Der,
    /// RSA only
    Pkcs1Pem,
    /// RSA only
    Pkcs1Der,
    /// EC private keys only
    Sec1Pem,
    /// EC private keys only
    Sec1Der,
    /// Public keys: SubjectPublicKeyInfo
    SpkiPem,
    SpkiDer,
    /// The key bytes (DER) in base64
    Base64,
    /// The key bytes (DER)
    Raw,
}

#[derive(Debug, Args)]
pub struct AsymExportArgs {
    #[command(flatten)]
    pub key: Selector,
    /// Format of the file
    #[arg(short = 'f', long, value_enum, default_value = "json-ttlv")]
    pub key_format: ExportFormat,
    /// Export in clear a key the KMS stores wrapped (you need the right to unwrap it)
    #[arg(short = 'u', long)]
    pub unwrap: bool,
    /// Export even a revoked key (KMIP Export instead of Get)
    #[arg(short = 'i', long)]
    pub allow_revoked: bool,
    /// The file to write
    pub key_file: PathBuf,
}

/// Import formats, as the reference CLI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// The KMIP object (JSON TTLV)
    JsonTtlv,
    /// PEM: the kind of key is read from its label
    Pem,
    /// SEC1 EC private key (DER)
    Sec1,
    /// PKCS#1 RSA private key (DER)
    Pkcs1Priv,
    /// PKCS#1 RSA public key (DER)
    Pkcs1Pub,
    /// PKCS#8 private key (DER)
    #[value(alias = "pkcs8")]
    Pkcs8Priv,
    /// SubjectPublicKeyInfo public key (DER)
    #[value(alias = "spki")]
    Pkcs8Pub,
}

#[derive(Debug, Args)]
pub struct AsymImportArgs {
    /// Format of the file
    #[arg(short = 'f', long, value_enum, default_value = "json-ttlv")]
    pub key_format: ImportFormat,
    /// Tag to attach (repeatable)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Replace an existing key with the same identifier
    #[arg(short = 'r', long)]
    pub replace_existing: bool,
    /// Have the KMS store the key wrapped by this key
    #[arg(short = 'w', long)]
    pub wrapping_key_id: Option<String>,
    /// The file to read
    pub key_file: PathBuf,
    /// The identifier to give the key [default: chosen by the KMS]
    pub key_id: Option<String>,
}

/// The kind (private or public key) of the object `id` names.
async fn kind_of(kms: &Kms, id: &str) -> Result<Kind, CliError> {
    let attributes = kms.kmip(&kmip::by_id("GetAttributes", id, vec![])).await?;
    match kmip::find(&attributes, "ObjectType").and_then(|o| o["value"].as_str()) {
        Some("PrivateKey") => Ok(Kind::PrivateKey),
        Some("PublicKey") => Ok(Kind::PublicKey),
        other => Err(CliError::Usage(format!(
            "{id} is not a private or public key ({})",
            other.unwrap_or("unknown type")
        ))),
    }
}

pub async fn keys(kms: &Kms, command: KeyCommand) -> Result<Outcome, CliError> {
    match command {
        KeyCommand::Export(args) => export(kms, args).await,
        KeyCommand::Import(args) => import(kms, args).await,
        KeyCommand::Revoke(args) => {
            let kind = kind_of(kms, &args.object.id()?).await?;
            lifecycle::revoke(kms, kind, args).await
        }
        KeyCommand::Destroy(args) => {
            let kind = kind_of(kms, &args.object.id()?).await?;
            lifecycle::destroy(kms, kind, args).await
        }
    }
}

/// The KMIP format to ask for, and the PEM label, for an export format and key kind.
fn export_format(
    format: ExportFormat,
    kind: Kind,
) -> Result<(Option<&'static str>, Option<&'static str>), CliError> {
    let private = kind == Kind::PrivateKey;
    let wrong = |what: &str| {
        Err(CliError::Usage(format!(
            "{what} is for {} keys: this is a {}",
            if private { "public" } else { "private" },
            kind.noun()
        )))
    };
    Ok(match format {
        ExportFormat::JsonTtlv => (None, None),
        ExportFormat::Raw | ExportFormat::Base64 => (Some("PKCS8"), None),
        ExportFormat::Pkcs8Pem | ExportFormat::Pkcs8Der if private => {
            (Some("PKCS8"), Some("PRIVATE KEY"))
        }
        ExportFormat::Pkcs8Pem
        | ExportFormat::Pkcs8Der
        | ExportFormat::SpkiPem
        | ExportFormat::SpkiDer => {
            if private {
                return wrong("spki");
            }
            (Some("PKCS8"), Some("PUBLIC KEY"))
        }
        ExportFormat::Pkcs1Pem | ExportFormat::Pkcs1Der => {
            let label = if private {
                "RSA PRIVATE KEY"
            } else {
                "RSA PUBLIC KEY"
            };
            (Some("PKCS1"), Some(label))
        }
        ExportFormat::Sec1Pem | ExportFormat::Sec1Der => {
            if !private {
                return wrong("sec1");
            }
            (Some("ECPrivateKey"), Some("EC PRIVATE KEY"))
        }
    })
}

async fn export(kms: &Kms, args: AsymExportArgs) -> Result<Outcome, CliError> {
    let id = args.key.id()?;
    let kind = kind_of(kms, &id).await?;
    let (format, label) = export_format(args.key_format, kind)?;
    let mut extra = Vec::new();
    if let Some(format) = format {
        extra.push(leaf("KeyFormatType", "Enumeration", json!(format)));
    }
    let wrap_type = if args.unwrap {
        "NotWrapped"
    } else {
        "AsRegistered"
    };
    extra.push(leaf("KeyWrapType", "Enumeration", json!(wrap_type)));
    let operation = if args.allow_revoked { "Export" } else { "Get" };
    let response = kms.kmip(&kmip::by_id(operation, &id, extra)).await?;
    let uid = kmip::text_field(&response, "UniqueIdentifier")?;
    let object = kmip::field(&response, kind.kmip())
        .ok_or_else(|| CliError::Protocol(format!("no {} in the answer", kind.kmip())))?;
    if args.key_format != ExportFormat::JsonTtlv && kmip::find(object, "KeyWrappingData").is_some()
    {
        return Err(CliError::Usage(format!(
            "{uid} is stored wrapped: export it as json-ttlv, or in clear with --unwrap"
        )));
    }
    let bytes: Zeroizing<Vec<u8>> = match args.key_format {
        ExportFormat::JsonTtlv => Zeroizing::new(
            serde_json::to_string_pretty(object)
                .map_err(|e| CliError::Protocol(e.to_string()))?
                .into_bytes(),
        ),
        ExportFormat::Base64 => {
            use base64::Engine;
            let der = Zeroizing::new(kmip::key_material(object)?);
            Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .encode(&*der)
                    .into_bytes(),
            )
        }
        ExportFormat::Pkcs8Pem
        | ExportFormat::Pkcs1Pem
        | ExportFormat::Sec1Pem
        | ExportFormat::SpkiPem => {
            let der = Zeroizing::new(kmip::key_material(object)?);
            let pem = pem::Pem::new(label.unwrap_or("PRIVATE KEY"), der.to_vec());
            // openssl's layout: LF line endings.
            let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
            Zeroizing::new(pem::encode_config(&pem, config).into_bytes())
        }
        _ => Zeroizing::new(kmip::key_material(object)?),
    };
    write(&args.key_file, &bytes, true)?;
    Ok(Outcome::new(
        format!(
            "The {} {uid} was exported to {}",
            kind.noun(),
            args.key_file.display()
        ),
        json!({"unique_identifier": uid, "file": args.key_file}),
    ))
}

/// The key kind and KMIP format of an import file.
fn import_format(
    format: ImportFormat,
    data: &[u8],
    name: &str,
) -> Result<(Kind, &'static str, Vec<u8>), CliError> {
    Ok(match format {
        ImportFormat::JsonTtlv => {
            return Err(CliError::Usage(format!(
                "{name}: json-ttlv files are read whole"
            )));
        }
        ImportFormat::Sec1 => (Kind::PrivateKey, "ECPrivateKey", data.to_vec()),
        ImportFormat::Pkcs1Priv => (Kind::PrivateKey, "PKCS1", data.to_vec()),
        ImportFormat::Pkcs1Pub => (Kind::PublicKey, "PKCS1", data.to_vec()),
        ImportFormat::Pkcs8Priv => (Kind::PrivateKey, "PKCS8", data.to_vec()),
        ImportFormat::Pkcs8Pub => (Kind::PublicKey, "PKCS8", data.to_vec()),
        ImportFormat::Pem => {
            let pem = pem::parse(data)
                .map_err(|e| CliError::Usage(format!("{name}: not a PEM file: {e}")))?;
            let (kind, format) = match pem.tag() {
                "PRIVATE KEY" => (Kind::PrivateKey, "PKCS8"),
                "RSA PRIVATE KEY" => (Kind::PrivateKey, "PKCS1"),
                "EC PRIVATE KEY" => (Kind::PrivateKey, "ECPrivateKey"),
                "PUBLIC KEY" => (Kind::PublicKey, "PKCS8"),
                "RSA PUBLIC KEY" => (Kind::PublicKey, "PKCS1"),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(CliError::Usage(format!(
                        "{name} holds an encrypted private key: decrypt it first (openssl pkcs8 -in {name} -out clear.pem)"
                    )));
                }
                other => {
                    return Err(CliError::Usage(format!(
                        "{name}: a PEM {other:?} is not a key this command imports (PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY, PUBLIC KEY, RSA PUBLIC KEY)"
                    )));
                }
            };
            (kind, format, pem.into_contents())
        }
    })
}

async fn import(kms: &Kms, args: AsymImportArgs) -> Result<Outcome, CliError> {
    let data = Zeroizing::new(read(&args.key_file)?);
    let name = args.key_file.display().to_string();
    let (kind, object) = if args.key_format == ImportFormat::JsonTtlv {
        let node: Value = serde_json::from_slice(&data)
            .map_err(|e| CliError::Usage(format!("{name}: not JSON TTLV: {e}")))?;
        let kind = match node["tag"].as_str() {
            Some("PrivateKey") => Kind::PrivateKey,
            Some("PublicKey") => Kind::PublicKey,
            other => {
                return Err(CliError::Usage(format!(
                    "{name} holds a {}, not a PrivateKey or PublicKey",
                    other.unwrap_or("(no tag)")
                )));
            }
        };
        (kind, node)
    } else {
        let (kind, format, der) = import_format(args.key_format, &data, &name)?;
        let der = Zeroizing::new(der);
        let object = json!({"tag": kind.kmip(), "value": [{"tag": "KeyBlock", "value": [
            leaf("KeyFormatType", "Enumeration", json!(format)),
            {"tag": "KeyValue", "value": [kmip::bytes("KeyMaterial", &der)]},
        ]}]});
        (kind, object)
    };
    let common = objects::ImportArgs {
        key_format: super::KeyFormat::JsonTtlv,
        tags: args.tags,
        unwrap: false,
        wrapping_key_id: args.wrapping_key_id,
        replace_existing: args.replace_existing,
        file: args.key_file,
        key_id: args.key_id,
    };
    let uid =
        objects::send_import(kms, kind, object, common.key_id.as_deref(), vec![], &common).await?;
    Ok(objects::created(kind, &uid, "imported"))
}
