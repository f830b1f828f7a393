//! What a certificate says beyond its subject and key, and the openssl-style extension text
//! the reference CLI sends (`x509_extension_file`).

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};

use super::invalid;
use crate::error::KmsError;

/// What a certificate says beyond its subject and key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Profile {
    pub days: u32,
    /// `basicConstraints`: None = absent; Some(None) = CA without path length.
    pub ca: Option<Option<u8>>,
    pub key_usage: Vec<KeyUsagePurpose>,
    pub extended_key_usage: Vec<ExtendedKeyUsagePurpose>,
    pub san: Vec<rcgen::SanType>,
}

/// The most days a certificate is issued for (about 30 years).
pub const MAX_DAYS: u32 = 11_000;

/// Reads the openssl-style extension section the reference CLI sends
/// (`x509_extension_file`): `basicConstraints`, `keyUsage`, `extendedKeyUsage`,
/// `subjectAltName`. A section header line is allowed; anything else is refused by name.
pub fn parse_extensions(text: &str, profile: &mut Profile) -> Result<(), KmsError> {
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() || (line.starts_with('[') && line.ends_with(']')) {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| invalid(format!("extensions: {line:?} is not key = value")))?;
        let values: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty() && *v != "critical")
            .collect();
        match key.trim() {
            "basicConstraints" => {
                let mut ca = None;
                let mut path = None;
                for v in values {
                    match v {
                        "CA:TRUE" | "CA:true" => ca = Some(true),
                        "CA:FALSE" | "CA:false" => ca = Some(false),
                        other => match other.strip_prefix("pathlen:") {
                            Some(n) => {
                                path =
                                    Some(n.trim().parse::<u8>().map_err(|_| {
                                        invalid(format!("extensions: pathlen {n:?}"))
                                    })?);
                            }
                            None => return Err(invalid(format!("basicConstraints {other:?}"))),
                        },
                    }
                }
                profile.ca = match ca {
                    Some(true) => Some(path),
                    _ => None,
                };
            }
            "keyUsage" => {
                for v in values {
                    profile.key_usage.push(match v {
                        "digitalSignature" => KeyUsagePurpose::DigitalSignature,
                        "nonRepudiation" | "contentCommitment" => {
                            KeyUsagePurpose::ContentCommitment
                        }
                        "keyEncipherment" => KeyUsagePurpose::KeyEncipherment,
                        "dataEncipherment" => KeyUsagePurpose::DataEncipherment,
                        "keyAgreement" => KeyUsagePurpose::KeyAgreement,
                        "keyCertSign" => KeyUsagePurpose::KeyCertSign,
                        "cRLSign" => KeyUsagePurpose::CrlSign,
                        "encipherOnly" => KeyUsagePurpose::EncipherOnly,
                        "decipherOnly" => KeyUsagePurpose::DecipherOnly,
                        other => return Err(invalid(format!("keyUsage {other:?}"))),
                    });
                }
            }
            "extendedKeyUsage" => {
                for v in values {
                    profile.extended_key_usage.push(match v {
                        "serverAuth" => ExtendedKeyUsagePurpose::ServerAuth,
                        "clientAuth" => ExtendedKeyUsagePurpose::ClientAuth,
                        "codeSigning" => ExtendedKeyUsagePurpose::CodeSigning,
                        "emailProtection" => ExtendedKeyUsagePurpose::EmailProtection,
                        "timeStamping" => ExtendedKeyUsagePurpose::TimeStamping,
                        "OCSPSigning" => ExtendedKeyUsagePurpose::OcspSigning,
                        other => return Err(invalid(format!("extendedKeyUsage {other:?}"))),
                    });
                }
            }
            "subjectAltName" => {
                for v in values {
                    let (kind, name) = v
                        .split_once(':')
                        .ok_or_else(|| invalid(format!("subjectAltName {v:?}")))?;
                    let name = name.trim();
                    let ia5 = |s: &str| {
                        rcgen::string::Ia5String::try_from(s.to_owned())
                            .map_err(|_| invalid(format!("subjectAltName {s:?} is not ASCII")))
                    };
                    profile.san.push(match kind.trim() {
                        "DNS" => rcgen::SanType::DnsName(ia5(name)?),
                        "email" => rcgen::SanType::Rfc822Name(ia5(name)?),
                        "URI" => rcgen::SanType::URI(ia5(name)?),
                        "IP" => rcgen::SanType::IpAddress(
                            name.parse()
                                .map_err(|_| invalid(format!("subjectAltName IP {name:?}")))?,
                        ),
                        other => return Err(invalid(format!("subjectAltName type {other:?}"))),
                    });
                }
            }
            other => {
                return Err(KmsError::NotSupported(format!(
                    "the certificate extension {other:?} (basicConstraints, keyUsage, extendedKeyUsage and subjectAltName are)"
                )));
            }
        }
    }
    Ok(())
}
