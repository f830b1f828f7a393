//! `ckms certificates`: certify (self-signed with a new key pair, a public key of the KMS, or a
//! CSR; signed by a CA of the KMS), export (PEM, DER, PKCS#12, the KMIP object), import (PEM
//! with its chain, DER, PKCS#12), validate, revoke, destroy — the reference CLI's syntax.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Outcome;
use super::lifecycle::{self, DestroyArgs, RevokeArgs};
use super::objects::{Kind, created, read, write};
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip::{self, leaf};

#[derive(Debug, Subcommand)]
pub enum CertificatesCommand {
    /// Issue a certificate (self-signed, or signed by a CA of the KMS)
    Certify(CertifyArgs),
    /// Write a certificate to a file (PEM, DER, PKCS#12 with its private key and chain)
    Export(CertExportArgs),
    /// Import certificates (PEM, with its chain), DER, or a PKCS#12 archive with its key
    Import(CertImportArgs),
    /// Check a certificate chain now (or at a date): signatures, CA flags, dates, revocation
    Validate(ValidateArgs),
    /// Revoke a certificate
    Revoke(RevokeArgs),
    /// Destroy a certificate (revoke it first)
    Destroy(DestroyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlgorithm {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    NistP256,
    NistP384,
    NistP521,
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CsrFormat {
    Pem,
    Der,
}

#[derive(Debug, Args)]
pub struct CertifyArgs {
    /// The identifier to give the certificate [default: chosen by the KMS]
    #[arg(short = 'c', long)]
    pub certificate_id: Option<String>,
    /// Certify the public key of this CSR file
    #[arg(short = 'r', long, value_name = "FILE")]
    pub certificate_signing_request: Option<PathBuf>,
    #[arg(short = 'f', long, value_enum, default_value = "pem")]
    pub certificate_signing_request_format: CsrFormat,
    /// Certify this public key of the KMS
    #[arg(short = 'p', long)]
    pub public_key_id_to_certify: Option<String>,
    /// Make a new key pair in the KMS and certify it
    #[arg(short = 'g', long)]
    pub generate_key_pair: bool,
    /// The subject, e.g. "CN=app.example,O=Example,C=FR" (CN, O, OU, C, ST, L, emailAddress,
    /// UID, serialNumber, title, DC, dnQualifier)
    #[arg(short = 's', long)]
    pub subject_name: Option<String>,
    /// The key pair to make (with --generate-key-pair)
    #[arg(short = 'a', long, value_enum, default_value = "rsa4096")]
    pub algorithm: KeyAlgorithm,
    /// The CA's private key in the KMS [default: the one linked to --issuer-certificate-id]
    #[arg(short = 'k', long)]
    pub issuer_private_key_id: Option<String>,
    /// The CA's certificate in the KMS (without issuer: self-signed)
    #[arg(short = 'i', long)]
    pub issuer_certificate_id: Option<String>,
    /// Validity in days
    #[arg(short = 'd', long, default_value_t = 365)]
    pub days: u32,
    /// An openssl-style extensions file (basicConstraints, keyUsage, extendedKeyUsage,
    /// subjectAltName)
    #[arg(short = 'e', long, value_name = "FILE")]
    pub certificate_extensions: Option<PathBuf>,
    /// Tag to attach (repeatable)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertFormat {
    /// The KMIP object (JSON TTLV)
    JsonTtlv,
    Pem,
    Der,
    /// PKCS#12: the certificate, its chain and its private key, under --pkcs12-password
    Pkcs12,
}

#[derive(Debug, Args)]
pub struct CertExportArgs {
    #[arg(short = 'c', long = "certificate-id", visible_alias = "key-id")]
    pub certificate_id: Option<String>,
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    #[arg(short = 'f', long, value_enum, default_value = "json-ttlv")]
    pub format: CertFormat,
    /// The PKCS#12 password
    #[arg(short = 'p', long)]
    pub pkcs12_password: Option<String>,
    /// Export even a revoked certificate
    #[arg(short = 'i', long)]
    pub allow_revoked: bool,
    pub certificate_file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertImportArgs {
    #[arg(short = 'f', long, value_enum, default_value = "json-ttlv")]
    pub format: CertFormat,
    /// The PKCS#12 password
    #[arg(short = 'p', long)]
    pub pkcs12_password: Option<String>,
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    #[arg(short = 'r', long)]
    pub replace_existing: bool,
    pub certificate_file: PathBuf,
    /// The identifier to give the (leaf) certificate, or the private key of a PKCS#12
    pub certificate_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A certificate of the KMS (repeatable; the first is the leaf)
    #[arg(short = 'v', long = "certificate-id")]
    pub certificate_ids: Vec<String>,
    /// A certificate file, PEM or DER (repeatable; before those of the KMS)
    #[arg(short = 'c', long = "certificate")]
    pub certificates: Vec<PathBuf>,
    /// Validate at this date (RFC 3339) instead of now
    #[arg(short = 'd', long)]
    pub validity_time: Option<String>,
}

pub async fn run(kms: &Kms, command: CertificatesCommand) -> Result<Outcome, CliError> {
    match command {
        CertificatesCommand::Certify(args) => certify(kms, args).await,
        CertificatesCommand::Export(args) => export(kms, args).await,
        CertificatesCommand::Import(args) => import(kms, args).await,
        CertificatesCommand::Validate(args) => validate(kms, args).await,
        CertificatesCommand::Revoke(args) => lifecycle::revoke(kms, Kind::Certificate, args).await,
        CertificatesCommand::Destroy(args) => {
            lifecycle::destroy(kms, Kind::Certificate, args).await
        }
    }
}

/// `CertificateAttributes` for a subject written "CN=a,O=b".
fn subject_attributes(subject: &str) -> Result<Value, CliError> {
    const NAMES: [(&str, &str); 12] = [
        ("CN", "Cn"),
        ("O", "O"),
        ("OU", "Ou"),
        ("emailAddress", "Email"),
        ("C", "C"),
        ("ST", "St"),
        ("L", "L"),
        ("UID", "Uid"),
        ("serialNumber", "SerialNumber"),
        ("title", "Title"),
        ("DC", "Dc"),
        ("dnQualifier", "DnQualifier"),
    ];
    let mut fields = Vec::new();
    for part in subject.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--subject-name: {part:?} is not KEY=value")))?;
        let (_, kmip_name) = NAMES
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key.trim()))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--subject-name: unknown attribute {key:?} (CN, O, OU, C, ST, L, emailAddress, UID, serialNumber, title, DC, dnQualifier)"
                ))
            })?;
        fields.push(kmip::text(
            &format!("CertificateSubject{kmip_name}"),
            value.trim(),
        ));
    }
    if fields.is_empty() {
        return Err(CliError::Usage("--subject-name is empty".into()));
    }
    Ok(json!({"tag": "CertificateAttributes", "value": fields}))
}

async fn certify(kms: &Kms, args: CertifyArgs) -> Result<Outcome, CliError> {
    let sources = [
        args.certificate_signing_request.is_some(),
        args.public_key_id_to_certify.is_some(),
        args.generate_key_pair,
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(CliError::Usage(
            "give one of --certificate-signing-request, --public-key-id-to-certify or --generate-key-pair".into(),
        ));
    }
    let mut attributes = vec![leaf("ActivationDate", "DateTime", json!(kmip::now()))];
    if let Some(id) = &args.certificate_id {
        attributes.push(kmip::text("UniqueIdentifier", id));
    }
    match (&args.subject_name, &args.certificate_signing_request) {
        (Some(s), None) => attributes.push(subject_attributes(s)?),
        (None, None) => {
            return Err(CliError::Usage(
                "--subject-name is required (a CSR carries its own)".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(CliError::Usage(
                "the subject comes from the CSR: leave out --subject-name".into(),
            ));
        }
        (None, Some(_)) => {}
    }
    if args.generate_key_pair {
        let (algorithm, extra) = match args.algorithm {
            KeyAlgorithm::Rsa2048 => ("RSA", leaf("CryptographicLength", "Integer", json!(2048))),
            KeyAlgorithm::Rsa3072 => ("RSA", leaf("CryptographicLength", "Integer", json!(3072))),
            KeyAlgorithm::Rsa4096 => ("RSA", leaf("CryptographicLength", "Integer", json!(4096))),
            KeyAlgorithm::NistP256 => ("ECDH", curve("P256")),
            KeyAlgorithm::NistP384 => ("ECDH", curve("P384")),
            KeyAlgorithm::NistP521 => ("ECDH", curve("P521")),
            KeyAlgorithm::Ed25519 => ("Ed25519", curve("CURVEED25519")),
        };
        attributes.push(leaf(
            "CryptographicAlgorithm",
            "Enumeration",
            json!(algorithm),
        ));
        attributes.push(extra);
        attributes.push(leaf("ObjectType", "Enumeration", json!("PrivateKey")));
    }
    if let Some(issuer) = &args.issuer_certificate_id {
        attributes.push(link("CertificateLink", issuer));
    }
    if let Some(issuer) = &args.issuer_private_key_id {
        attributes.push(link("PrivateKeyLink", issuer));
    }
    attributes.push(json!({"tag": "Attribute", "value": [
        kmip::text("VendorIdentification", "cosmian"),
        kmip::text("AttributeName", "requested_validity_days"),
        leaf("AttributeValue", "Integer", json!(args.days)),
    ]}));
    if let Some(file) = &args.certificate_extensions {
        let text = String::from_utf8(read(file)?)
            .map_err(|_| CliError::Usage(format!("{}: not UTF-8 text", file.display())))?;
        attributes.push(kmip::vendor("x509_extension_file", &text));
    }
    attributes.push(kmip::tags_attribute(&args.tags));
    let mut request = Vec::new();
    if let Some(id) = &args.public_key_id_to_certify {
        request.push(kmip::text("UniqueIdentifier", id));
    }
    if let Some(csr) = &args.certificate_signing_request {
        let (kind, bytes) = match args.certificate_signing_request_format {
            CsrFormat::Pem => ("PEM", read(csr)?),
            CsrFormat::Der => ("PKCS10", read(csr)?),
        };
        request.push(leaf("CertificateRequestType", "Enumeration", json!(kind)));
        request.push(kmip::bytes("CertificateRequestValue", &bytes));
    }
    request.push(json!({"tag": "Attributes", "value": attributes}));
    let response = kms
        .kmip(&json!({"tag": "Certify", "value": request}))
        .await?;
    let uid = kmip::text_field(&response, "UniqueIdentifier")?;
    Ok(Outcome::new(
        format!("The certificate was issued: {uid}"),
        json!({"unique_identifier": uid}),
    ))
}

fn curve(name: &str) -> Value {
    json!({"tag": "CryptographicDomainParameters", "value": [
        leaf("RecommendedCurve", "Enumeration", json!(name)),
    ]})
}

fn link(link_type: &str, uid: &str) -> Value {
    json!({"tag": "Link", "value": [
        leaf("LinkType", "Enumeration", json!(link_type)),
        kmip::text("LinkedObjectIdentifier", uid),
    ]})
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der.to_vec()), config)
}

async fn export(kms: &Kms, args: CertExportArgs) -> Result<Outcome, CliError> {
    let id = kmip::identifier(args.certificate_id.as_deref(), &args.tags)?;
    let operation = if args.allow_revoked { "Export" } else { "Get" };
    let mut extra = Vec::new();
    if args.format == CertFormat::Pkcs12 {
        let password = args
            .pkcs12_password
            .as_deref()
            .ok_or_else(|| CliError::Usage("a PKCS#12 export needs --pkcs12-password".into()))?;
        extra.push(leaf("KeyFormatType", "Enumeration", json!("PKCS12")));
        // The reference's encoding: the password as the wrapping key's identifier.
        extra.push(json!({"tag": "KeyWrappingSpecification", "value": [
            leaf("WrappingMethod", "Enumeration", json!("Encrypt")),
            {"tag": "EncryptionKeyInformation", "value": [kmip::text("UniqueIdentifier", password)]},
            leaf("EncodingOption", "Enumeration", json!("NoEncoding")),
        ]}));
    } else {
        extra.push(leaf("KeyFormatType", "Enumeration", json!("X509")));
    }
    let response = kms.kmip(&kmip::by_id(operation, &id, extra)).await?;
    let uid = kmip::text_field(&response, "UniqueIdentifier")?;
    let data: Zeroizing<Vec<u8>> = match args.format {
        CertFormat::Pkcs12 => Zeroizing::new(kmip::key_material(&response)?),
        CertFormat::JsonTtlv => {
            let object = kmip::field(&response, "Certificate")
                .ok_or_else(|| CliError::Usage(format!("{uid} is not a certificate")))?;
            Zeroizing::new(
                serde_json::to_string_pretty(object)
                    .map_err(|e| CliError::Protocol(e.to_string()))?
                    .into_bytes(),
            )
        }
        CertFormat::Pem | CertFormat::Der => {
            let object = kmip::field(&response, "Certificate")
                .ok_or_else(|| CliError::Usage(format!("{uid} is not a certificate")))?;
            let der = kmip::bytes_field(object, "CertificateValue")?;
            if args.format == CertFormat::Pem {
                Zeroizing::new(pem_encode("CERTIFICATE", &der).into_bytes())
            } else {
                Zeroizing::new(der)
            }
        }
    };
    write(&args.certificate_file, &data, true)?;
    Ok(Outcome::new(
        format!(
            "The certificate {uid} was exported to {}",
            args.certificate_file.display()
        ),
        json!({"unique_identifier": uid, "file": args.certificate_file}),
    ))
}

fn certificate_object(der: &[u8]) -> Value {
    json!({"tag": "Certificate", "value": [
        leaf("CertificateType", "Enumeration", json!("X509")),
        kmip::bytes("CertificateValue", der),
    ]})
}

/// Sends one Import; its uid.
async fn send(
    kms: &Kms,
    object_type: &str,
    object: Value,
    id: Option<&str>,
    mut attributes: Vec<Value>,
    args: &CertImportArgs,
) -> Result<String, CliError> {
    attributes.insert(0, leaf("ActivationDate", "DateTime", json!(kmip::now())));
    attributes.push(kmip::tags_attribute(&args.tags));
    let request = json!({"tag": "Import", "value": [
        kmip::text("UniqueIdentifier", id.unwrap_or("")),
        leaf("ObjectType", "Enumeration", json!(object_type)),
        leaf("ReplaceExisting", "Boolean", json!(args.replace_existing)),
        {"tag": "Attributes", "value": attributes},
        object,
    ]});
    let response = kms.kmip(&request).await?;
    kmip::text_field(&response, "UniqueIdentifier")
}

async fn import(kms: &Kms, args: CertImportArgs) -> Result<Outcome, CliError> {
    let data = Zeroizing::new(read(&args.certificate_file)?);
    let name = args.certificate_file.display().to_string();
    let id = args.certificate_id.as_deref();
    let uid = match args.format {
        CertFormat::Pkcs12 => {
            let password = args.pkcs12_password.as_deref().ok_or_else(|| {
                CliError::Usage("a PKCS#12 import needs --pkcs12-password".into())
            })?;
            let object = json!({"tag": "PrivateKey", "value": [{"tag": "KeyBlock", "value": [
                leaf("KeyFormatType", "Enumeration", json!("PKCS12")),
                {"tag": "KeyValue", "value": [kmip::bytes("KeyMaterial", &data)]},
            ]}]});
            let uid = send(
                kms,
                "PrivateKey",
                object,
                id,
                vec![link("PKCS12PasswordLink", password)],
                &args,
            )
            .await?;
            return Ok(Outcome::new(
                format!(
                    "The PKCS#12 archive was imported: private key {uid}, certificate {uid}_cert"
                ),
                json!({"unique_identifier": uid, "certificate_unique_identifier": format!("{uid}_cert")}),
            ));
        }
        CertFormat::JsonTtlv => {
            let node: Value = serde_json::from_slice(&data)
                .map_err(|e| CliError::Usage(format!("{name}: not JSON TTLV: {e}")))?;
            if node["tag"] != "Certificate" {
                return Err(CliError::Usage(format!("{name} holds no Certificate")));
            }
            send(kms, "Certificate", node, id, vec![], &args).await?
        }
        CertFormat::Der => {
            send(
                kms,
                "Certificate",
                certificate_object(&data),
                id,
                vec![],
                &args,
            )
            .await?
        }
        CertFormat::Pem => {
            // Leaf first, then its chain: imported root first so each links to its issuer.
            let blocks = pem::parse_many(&*data)
                .map_err(|e| CliError::Usage(format!("{name}: not PEM: {e}")))?;
            let certs: Vec<&pem::Pem> =
                blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
            if certs.is_empty() {
                return Err(CliError::Usage(format!("{name} holds no CERTIFICATE")));
            }
            let mut parent: Option<String> = None;
            let mut uid = String::new();
            for (i, cert) in certs.iter().enumerate().rev() {
                let attributes = parent.iter().map(|p| link("CertificateLink", p)).collect();
                let this_id = if i == 0 { id } else { None };
                uid = send(
                    kms,
                    "Certificate",
                    certificate_object(cert.contents()),
                    this_id,
                    attributes,
                    &args,
                )
                .await?;
                parent = Some(uid.clone());
            }
            uid
        }
    };
    Ok(created(Kind::Certificate, &uid, "imported"))
}

async fn validate(kms: &Kms, args: ValidateArgs) -> Result<Outcome, CliError> {
    let mut request = Vec::new();
    for file in &args.certificates {
        let data = read(file)?;
        let der = match pem::parse(&data) {
            Ok(block) => block.into_contents(),
            Err(_) => data,
        };
        request.push(certificate_object(&der));
    }
    for id in &args.certificate_ids {
        request.push(kmip::text("UniqueIdentifier", id));
    }
    if request.is_empty() {
        return Err(CliError::Usage(
            "give --certificate-id or --certificate".into(),
        ));
    }
    if let Some(at) = &args.validity_time {
        let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .map_err(|e| CliError::Usage(format!("--validity-time {at:?}: {e}")))?;
        request.push(leaf("ValidityDate", "DateTime", json!(kmip::date(t))));
    }
    let response = kms
        .kmip(&json!({"tag": "Validate", "value": request}))
        .await?;
    let validity = kmip::text_field(&response, "ValidityIndicator")?;
    if validity != "Valid" {
        return Err(CliError::Usage(format!(
            "Certificate validation is {validity} (the KMS logs why)"
        )));
    }
    Ok(Outcome::new(
        "Certificate validation is Valid",
        json!({"validity": validity}),
    ))
}
