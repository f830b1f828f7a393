//! What `sym keys`, `secret-data` and `opaque-object` share: selecting an object, exporting it
//! (in clear, or wrapped by another key of the KMS), importing it (in clear, or wrapped), and
//! revoking and destroying it. Each command names its object kind, and the KMS is told which
//! kind is expected so that a uid of another kind is refused, not acted on.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{KeyFormat, Outcome};
use crate::error::CliError;
use crate::files::{Existing, write_private};
use crate::http::Kms;
use crate::kmip::{self, leaf};

/// The kinds of objects these commands manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SymmetricKey,
    SecretData,
    OpaqueObject,
    PrivateKey,
    PublicKey,
    Certificate,
}

impl Kind {
    /// The KMIP `ObjectType` name (also the object's structure tag).
    pub fn kmip(self) -> &'static str {
        match self {
            Self::SymmetricKey => "SymmetricKey",
            Self::SecretData => "SecretData",
            Self::OpaqueObject => "OpaqueObject",
            Self::PrivateKey => "PrivateKey",
            Self::PublicKey => "PublicKey",
            Self::Certificate => "Certificate",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Self::SymmetricKey => "key",
            Self::SecretData => "secret data",
            Self::OpaqueObject => "opaque object",
            Self::PrivateKey => "private key",
            Self::PublicKey => "public key",
            Self::Certificate => "certificate",
        }
    }
}

#[derive(Debug, Args)]
pub struct Selector {
    /// The object's unique identifier
    #[arg(short = 'k', long = "key-id", visible_aliases = ["secret-data-id", "id"])]
    pub key_id: Option<String>,
    /// Select the object by tag instead (repeat: all of them)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
}

impl Selector {
    pub fn id(&self) -> Result<String, CliError> {
        kmip::identifier(self.key_id.as_deref(), &self.tags)
    }
}

/// How a key is wrapped on export, as the reference CLI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WrappingAlgorithm {
    /// RFC 3394 (KMIP NISTKeyWrap), the default
    NistKeyWrap,
    /// RFC 5649 (KMIP AESKeyWrapPadding)
    AesKeyWrapPadding,
    /// AES-GCM: nonce ‖ ciphertext ‖ tag
    AesGcm,
}

impl WrappingAlgorithm {
    pub fn kmip(self) -> &'static str {
        match self {
            Self::NistKeyWrap => "NISTKeyWrap",
            Self::AesKeyWrapPadding => "AESKeyWrapPadding",
            Self::AesGcm => "GCM",
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub object: Selector,
    /// Format of the file: json-ttlv (the KMIP object), raw bytes, or base64
    #[arg(short = 'f', long, value_enum, default_value = "json-ttlv")]
    pub key_format: KeyFormat,
    /// Wrap the exported key with this key of the KMS (json-ttlv: the whole key value,
    /// TTLV-encoded; raw/base64: the key bytes)
    #[arg(short = 'w', long)]
    pub wrap_key_id: Option<String>,
    /// How to wrap it
    #[arg(short = 'm', long, value_enum, requires = "wrap_key_id")]
    pub wrapping_algorithm: Option<WrappingAlgorithm>,
    /// Export in clear an object the KMS stores wrapped (you need the right to unwrap it)
    #[arg(short = 'u', long, conflicts_with = "wrap_key_id")]
    pub unwrap: bool,
    /// Export even a revoked or compromised object (KMIP Export instead of Get)
    #[arg(short = 'i', long)]
    pub allow_revoked: bool,
    /// The file to write
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Format of the file
    #[arg(short = 'f', long, value_enum, default_value = "json-ttlv")]
    pub key_format: KeyFormat,
    /// Tag to attach (repeatable)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// A wrapped json-ttlv object is unwrapped by the KMS (you need the right to decrypt with
    /// its wrapping key); without it, it is stored as it is, wrapped
    #[arg(short = 'u', long)]
    pub unwrap: bool,
    /// Have the KMS store the object wrapped by this key
    #[arg(short = 'w', long)]
    pub wrapping_key_id: Option<String>,
    /// Replace an existing object with the same identifier
    #[arg(short = 'r', long)]
    pub replace_existing: bool,
    /// The file to read
    pub file: PathBuf,
    /// The identifier to give the object [default: chosen by the KMS]
    pub key_id: Option<String>,
}

pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::io(&format!("cannot read {}", path.display()), e))
}

/// Writes an output file (see [`crate::files`]): replaced when `replace`, else refused when
/// it exists.
pub fn write(path: &Path, data: &[u8], replace: bool) -> Result<(), CliError> {
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

pub(super) fn created(kind: Kind, uid: &str, verb: &str) -> Outcome {
    Outcome::new(
        format!("The {} {uid} was {verb}", kind.noun()),
        json!({"unique_identifier": uid}),
    )
}

pub async fn export(kms: &Kms, kind: Kind, args: ExportArgs) -> Result<Outcome, CliError> {
    let id = args.object.id()?;
    let mut extra = Vec::new();
    if let Some(kek) = &args.wrap_key_id {
        if kind == Kind::OpaqueObject {
            return Err(CliError::Usage(
                "an opaque object has no key block and cannot be wrapped".into(),
            ));
        }
        let mut info = vec![kmip::text("UniqueIdentifier", kek)];
        if let Some(alg) = args.wrapping_algorithm {
            info.push(json!({"tag": "CryptographicParameters", "value": [
                leaf("BlockCipherMode", "Enumeration", json!(alg.kmip())),
            ]}));
        }
        // The reference's choice: a json-ttlv file wraps the whole key value (TTLV), a raw
        // or base64 file the key bytes.
        let encoding = match args.key_format {
            KeyFormat::JsonTtlv => "TTLVEncoding",
            KeyFormat::Raw | KeyFormat::Base64 => "NoEncoding",
        };
        extra.push(json!({"tag": "KeyWrappingSpecification", "value": [
            leaf("WrappingMethod", "Enumeration", json!("Encrypt")),
            {"tag": "EncryptionKeyInformation", "value": info},
            leaf("EncodingOption", "Enumeration", json!(encoding)),
        ]}));
    } else {
        let wrap_type = if args.unwrap {
            "NotWrapped"
        } else {
            "AsRegistered"
        };
        extra.push(leaf("KeyWrapType", "Enumeration", json!(wrap_type)));
    }
    let operation = if args.allow_revoked { "Export" } else { "Get" };
    let response = kms.kmip(&kmip::by_id(operation, &id, extra)).await?;
    let uid = kmip::text_field(&response, "UniqueIdentifier")?;
    let object = kmip::field(&response, kind.kmip()).ok_or_else(|| {
        CliError::Usage(format!(
            "{uid} is not {} ({})",
            kind.kmip(),
            object_type(&response)
        ))
    })?;
    match args.key_format {
        KeyFormat::JsonTtlv => {
            let text = serde_json::to_string_pretty(object)
                .map_err(|e| CliError::Protocol(e.to_string()))?;
            write(&args.file, text.as_bytes(), true)?;
        }
        KeyFormat::Raw => write(&args.file, &kmip::key_material(object)?, true)?,
        KeyFormat::Base64 => {
            let bytes = kmip::key_material(object)?;
            write(&args.file, B64.encode(&*bytes).as_bytes(), true)?;
        }
    }
    Ok(Outcome::new(
        format!(
            "The {} {uid} was exported to {}",
            kind.noun(),
            args.file.display()
        ),
        json!({"unique_identifier": uid, "file": args.file}),
    ))
}

fn object_type(response: &Value) -> String {
    kmip::text_field(response, "ObjectType").unwrap_or_else(|_| "unknown type".into())
}

/// The object node for `kind` holding `bytes` in clear.
pub fn clear_object(kind: Kind, bytes: &[u8]) -> Value {
    let value = json!({"tag": "KeyValue", "value": [kmip::bytes("KeyMaterial", bytes)]});
    match kind {
        Kind::SymmetricKey => {
            json!({"tag": "SymmetricKey", "value": [{"tag": "KeyBlock", "value": [
                leaf("KeyFormatType", "Enumeration", json!("Raw")),
                value,
                leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
                leaf("CryptographicLength", "Integer", json!(bytes.len() * 8)),
            ]}]})
        }
        Kind::SecretData => json!({"tag": "SecretData", "value": [
            leaf("SecretDataType", "Enumeration", json!("Password")),
            {"tag": "KeyBlock", "value": [
                leaf("KeyFormatType", "Enumeration", json!("Raw")),
                value,
            ]},
        ]}),
        Kind::OpaqueObject => json!({"tag": "OpaqueObject", "value": [
            leaf("OpaqueDataType", "Enumeration", json!("Vendor")),
            kmip::bytes("OpaqueDataValue", bytes),
        ]}),
        // DER: PKCS#8 for a private key, SubjectPublicKeyInfo for a public key.
        Kind::Certificate => json!({"tag": "Certificate", "value": [
            leaf("CertificateType", "Enumeration", json!("X509")),
            kmip::bytes("CertificateValue", bytes),
        ]}),
        Kind::PrivateKey | Kind::PublicKey => json!({"tag": kind.kmip(), "value": [
            {"tag": "KeyBlock", "value": [
                leaf("KeyFormatType", "Enumeration", json!("PKCS8")),
                value,
            ]},
        ]}),
    }
}

/// Sends an Import of `object` (a node of `kind`) with the common attributes.
pub async fn send_import(
    kms: &Kms,
    kind: Kind,
    object: Value,
    id: Option<&str>,
    extra_attributes: Vec<Value>,
    args: &ImportArgs,
) -> Result<String, CliError> {
    let mut attributes = vec![leaf("ActivationDate", "DateTime", json!(kmip::now()))];
    attributes.extend(extra_attributes);
    if let Some(kek) = &args.wrapping_key_id {
        attributes.push(kmip::vendor("wrapping_key_id", kek));
    }
    attributes.push(kmip::tags_attribute(&args.tags));
    let mut request = vec![
        kmip::text("UniqueIdentifier", id.unwrap_or("")),
        leaf("ObjectType", "Enumeration", json!(kind.kmip())),
        leaf("ReplaceExisting", "Boolean", json!(args.replace_existing)),
    ];
    if kmip::find(&object, "KeyWrappingData").is_some() {
        let wrap_type = if args.unwrap {
            "NotWrapped"
        } else {
            "AsRegistered"
        };
        request.push(leaf("KeyWrapType", "Enumeration", json!(wrap_type)));
    }
    request.push(json!({"tag": "Attributes", "value": attributes}));
    request.push(object);
    let response = kms
        .kmip(&json!({"tag": "Import", "value": request}))
        .await?;
    kmip::text_field(&response, "UniqueIdentifier")
}

pub async fn import(kms: &Kms, kind: Kind, args: ImportArgs) -> Result<Outcome, CliError> {
    let data = Zeroizing::new(read(&args.file)?);
    let name = args.file.display();
    let object = match args.key_format {
        KeyFormat::JsonTtlv => {
            let node: Value = serde_json::from_slice(&data)
                .map_err(|e| CliError::Usage(format!("{name}: not JSON TTLV: {e}")))?;
            if node["tag"] != kind.kmip() {
                return Err(CliError::Usage(format!(
                    "{name} holds a {}, not a {}",
                    node["tag"].as_str().unwrap_or("(no tag)"),
                    kind.kmip()
                )));
            }
            node
        }
        KeyFormat::Raw => clear_object(kind, &data),
        KeyFormat::Base64 => {
            let bytes = Zeroizing::new(
                B64.decode(String::from_utf8_lossy(&data).trim())
                    .map_err(|e| CliError::Usage(format!("{name}: not base64: {e}")))?,
            );
            clear_object(kind, &bytes)
        }
    };
    if args.unwrap && kmip::find(&object, "KeyWrappingData").is_none() {
        return Err(CliError::Usage(format!(
            "{name} is not wrapped: --unwrap applies to a wrapped json-ttlv object"
        )));
    }
    let uid = send_import(kms, kind, object, args.key_id.as_deref(), vec![], &args).await?;
    Ok(created(kind, &uid, "imported"))
}
