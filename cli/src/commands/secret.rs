//! `ckms secret-data` and `ckms opaque-object`: create (from a value or, for secret data, a
//! random seed made by the KMS), export, import, revoke and destroy.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::Outcome;
use super::lifecycle::{self, DestroyArgs, RevokeArgs};
use super::objects::{self, ExportArgs, ImportArgs, Kind};
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip::{self, leaf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretType {
    Password,
    Seed,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The secret (its UTF-8 bytes) [default: a random 256-bit seed made by the KMS]
    #[arg(short = 'v', long)]
    pub value: Option<String>,
    /// The secret's type
    #[arg(long = "type", value_enum)]
    pub secret_type: Option<SecretType>,
    /// Tag to attach (repeatable)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// It may never leave the KMS in clear (only wrapped)
    #[arg(long)]
    pub sensitive: bool,
    /// Store it wrapped by this key of the KMS
    #[arg(short = 'w', long)]
    pub wrapping_key_id: Option<String>,
    /// The identifier to give it [default: chosen by the KMS]
    pub secret_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret, or have the KMS make a random seed
    Create(CreateArgs),
    /// Write secret data to a file
    Export(ExportArgs),
    /// Import secret data from a file
    Import(ImportArgs),
    /// Revoke secret data
    Revoke(RevokeArgs),
    /// Destroy secret data (revoke it first)
    Destroy(DestroyArgs),
}

#[derive(Debug, Subcommand)]
pub enum OpaqueCommand {
    /// Store opaque bytes
    Create {
        /// The bytes, given as text (UTF-8)
        #[arg(short = 'd', long, conflicts_with = "file")]
        data: Option<String>,
        /// Or read the bytes from a file
        #[arg(short = 'f', long)]
        file: Option<std::path::PathBuf>,
        /// Tag to attach (repeatable)
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        /// The identifier to give it [default: chosen by the KMS]
        object_id: Option<String>,
    },
    /// Write an opaque object to a file
    Export(ExportArgs),
    /// Import an opaque object from a file
    Import(ImportArgs),
    /// Revoke an opaque object
    Revoke(RevokeArgs),
    /// Destroy an opaque object (revoke it first)
    Destroy(DestroyArgs),
}

fn import_args(tags: Vec<String>, wrapping_key_id: Option<String>) -> ImportArgs {
    ImportArgs {
        key_format: super::KeyFormat::Raw,
        tags,
        unwrap: false,
        wrapping_key_id,
        replace_existing: false,
        file: Default::default(),
        key_id: None,
    }
}

fn created(what: &str, uid: &str) -> Outcome {
    Outcome::new(
        format!("The {what} was created with identifier {uid}"),
        json!({"unique_identifier": uid}),
    )
}

pub async fn secret_data(kms: &Kms, command: SecretCommand) -> Result<Outcome, CliError> {
    let kind = Kind::SecretData;
    match command {
        SecretCommand::Create(args) => {
            let mut attributes = Vec::new();
            if args.sensitive {
                attributes.push(leaf("Sensitive", "Boolean", json!(true)));
            }
            let uid = match &args.value {
                Some(value) => {
                    let secret_type = match args.secret_type.unwrap_or(SecretType::Password) {
                        SecretType::Password => "Password",
                        SecretType::Seed => "Seed",
                    };
                    let mut object = objects::clear_object(kind, value.as_bytes());
                    object["value"][0] = leaf("SecretDataType", "Enumeration", json!(secret_type));
                    let import = import_args(args.tags.clone(), args.wrapping_key_id.clone());
                    let id = args.secret_id.as_deref();
                    objects::send_import(kms, kind, object, id, attributes, &import).await?
                }
                None => {
                    if args.secret_type == Some(SecretType::Password) {
                        return Err(CliError::Usage(
                            "a password needs its --value (the KMS makes random seeds only)".into(),
                        ));
                    }
                    attributes.push(leaf("ActivationDate", "DateTime", json!(kmip::now())));
                    attributes.push(leaf("ObjectType", "Enumeration", json!("SecretData")));
                    if let Some(id) = &args.secret_id {
                        attributes.push(kmip::text("UniqueIdentifier", id));
                    }
                    if let Some(kek) = &args.wrapping_key_id {
                        attributes.push(kmip::vendor("wrapping_key_id", kek));
                    }
                    attributes.push(kmip::tags_attribute(&args.tags));
                    let request = json!({"tag": "Create", "value": [
                        leaf("ObjectType", "Enumeration", json!("SecretData")),
                        {"tag": "Attributes", "value": attributes},
                    ]});
                    let response = kms.kmip(&request).await?;
                    kmip::text_field(&response, "UniqueIdentifier")?
                }
            };
            Ok(created("secret data", &uid))
        }
        SecretCommand::Export(args) => objects::export(kms, kind, args).await,
        SecretCommand::Import(args) => objects::import(kms, kind, args).await,
        SecretCommand::Revoke(args) => lifecycle::revoke(kms, kind, args).await,
        SecretCommand::Destroy(args) => lifecycle::destroy(kms, kind, args).await,
    }
}

pub async fn opaque_object(kms: &Kms, command: OpaqueCommand) -> Result<Outcome, CliError> {
    let kind = Kind::OpaqueObject;
    match command {
        OpaqueCommand::Create {
            data,
            file,
            tags,
            object_id,
        } => {
            let bytes = match (data, file) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(path)) => objects::read(&path)?,
                _ => {
                    return Err(CliError::Usage(
                        "give the bytes with --data or --file".into(),
                    ));
                }
            };
            let object = objects::clear_object(kind, &bytes);
            let import = import_args(tags, None);
            let uid =
                objects::send_import(kms, kind, object, object_id.as_deref(), vec![], &import)
                    .await?;
            Ok(created("opaque object", &uid))
        }
        OpaqueCommand::Export(args) => objects::export(kms, kind, args).await,
        OpaqueCommand::Import(args) => objects::import(kms, kind, args).await,
        OpaqueCommand::Revoke(args) => lifecycle::revoke(kms, kind, args).await,
        OpaqueCommand::Destroy(args) => lifecycle::destroy(kms, kind, args).await,
    }
}
