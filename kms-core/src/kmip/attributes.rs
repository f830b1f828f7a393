//! KMIP attributes both ways: the `Attributes` structure of a request read into
//! [`RequestAttributes`] (anything this server does not implement is refused by name), and an
//! object's attributes written in the reference's order.

use std::collections::BTreeSet;

use crate::error::KmsError;
use crate::kmip::build::{boolean, bytes, date, enumeration, int, interval, long, structure, text};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::ttlv::{Ttlv, decode_hex};
use crate::object::{ManagedObject, Name, ObjectType, State};

/// What an `Attributes` structure is for: the attributes of a new object (Create, Import,
/// Register), or the filters of a Locate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    New,
    /// An object that exists already (Import, Register): it may carry its links.
    Import,
    /// A certificate to issue: links to its issuer, its subject, validity and extensions.
    Certify,
    Filter,
}

/// The attributes of a request this server understands.
#[derive(Debug, Default)]
pub struct RequestAttributes<'a> {
    pub object_type: Option<ObjectType>,
    pub algorithm: Option<&'a str>,
    pub length: Option<i32>,
    /// `CryptographicDomainParameters.RecommendedCurve`.
    pub curve: Option<&'a str>,
    pub usage_mask: Option<i32>,
    pub activation_date: Option<i64>,
    pub uid: Option<&'a str>,
    pub key_format: Option<&'a str>,
    pub sensitive: Option<bool>,
    pub state: Option<State>,
    pub tags: Option<BTreeSet<String>>,
    /// The reference's vendor attribute `cosmian:wrapping_key_id`.
    pub wrapping_key_id: Option<&'a str>,
    /// `Name` values (a Locate filter takes one).
    pub names: Vec<Name>,
    /// `Link` values of an imported object.
    pub links: Vec<crate::object::Link>,
    /// `CertificateAttributes`: the subject of a certificate to issue.
    pub subject: Option<crate::certificates::Subject>,
    /// The reference's vendor attribute `requested_validity_days` (Certify).
    pub validity_days: Option<i32>,
    /// The reference's vendor attribute `x509_extension_file` (Certify).
    pub extensions: Option<String>,
}

/// Attributes the server maintains itself. On a new object they may be present (an object
/// exported by this server or the reference and imported again carries them); the server's
/// own values replace them, as KMIP makes them read-only for clients.
pub const SERVER_MAINTAINED: [&str; 13] = [
    "AlwaysSensitive",
    "NeverExtractable",
    "Digest",
    "InitialDate",
    "LastChangeDate",
    "OriginalCreationDate",
    "LeaseTime",
    "RandomNumberGenerator",
    "ShortUniqueIdentifier",
    "RotateGeneration",
    "RotateLatest",
    "Fresh",
    "State",
];

pub fn object_type(name: &str) -> Result<ObjectType, KmsError> {
    // The name was checked against the KMIP list when read, so this only fails on a bug.
    ObjectType::parse(name).ok_or_else(|| KmsError::Codec(format!("ObjectType {name}")))
}

/// Reads an `Attributes` structure (absent = empty).
pub fn parse<'a>(
    node: Option<&'a Ttlv>,
    path: &str,
    purpose: Purpose,
) -> Result<RequestAttributes<'a>, KmsError> {
    let mut out = RequestAttributes::default();
    let Some(node) = node else {
        return Ok(out);
    };
    let mut f = Fields::of(node, format!("{path}.Attributes"))?;
    out.object_type = f.enumeration("ObjectType")?.map(object_type).transpose()?;
    out.algorithm = f.enumeration("CryptographicAlgorithm")?;
    out.length = f.int("CryptographicLength")?;
    if let Some(mut domain) = f.structure("CryptographicDomainParameters")? {
        out.curve = domain.enumeration("RecommendedCurve")?;
        // Qlength is the size of the subgroup order, which the curve fixes: the reference
        // sends 256 whatever the curve, so it is read and left to the curve.
        domain.int("Qlength")?;
        domain.finish()?;
    }
    out.key_format = f.enumeration("KeyFormatType")?;
    out.uid = f.text("UniqueIdentifier")?;
    for attribute in f.all("Attribute") {
        vendor_attribute(attribute, &mut out, f.path(), purpose)?;
    }
    for name in f.all("Name") {
        out.names
            .push(parse_name(Fields::of(name, format!("{}.Name", f.path()))?)?);
    }
    if purpose == Purpose::Filter && out.names.len() > 1 {
        return Err(KmsError::InvalidRequest(
            "Locate: at most one Name filter".into(),
        ));
    }
    if purpose == Purpose::Certify {
        if let Some(c) = f.structure("CertificateAttributes")? {
            out.subject = Some(certificate_attributes(c)?);
        }
    }
    if matches!(purpose, Purpose::Import | Purpose::Certify) {
        for link in f.all("Link") {
            let mut l = Fields::of(link, format!("{}.Link", f.path()))?;
            let link_type = l.enumeration("LinkType")?.unwrap_or_default().to_owned();
            let uid = l
                .text("LinkedObjectIdentifier")?
                .unwrap_or_default()
                .to_owned();
            l.finish()?;
            if link_type.is_empty() || uid.is_empty() || uid.len() > 256 {
                return Err(KmsError::InvalidRequest(format!(
                    "{}.Link: a LinkType and a LinkedObjectIdentifier (at most 256 bytes)",
                    f.path()
                )));
            }
            out.links.push(crate::object::Link { link_type, uid });
        }
    }
    match purpose {
        Purpose::New | Purpose::Import | Purpose::Certify => {
            out.usage_mask = f.int("CryptographicUsageMask")?;
            out.activation_date = f.date("ActivationDate")?;
            out.sensitive = f.boolean("Sensitive")?;
            if f.boolean("Extractable")? == Some(false) {
                return Err(unsupported(f.path(), "Extractable false"));
            }
            for tag in SERVER_MAINTAINED {
                f.accept(tag);
            }
        }
        Purpose::Filter => {
            out.state = f
                .enumeration("State")?
                .map(|s| State::parse(s).ok_or_else(|| KmsError::Codec(format!("State {s}"))))
                .transpose()?;
        }
    }
    f.finish()?;
    Ok(out)
}

/// A `Name` structure: `NameValue` (1 to 256 bytes, no control characters) and `NameType`.
pub fn parse_name(mut n: Fields<'_>) -> Result<Name, KmsError> {
    let value = n.text("NameValue")?.unwrap_or_default();
    let name_type = n
        .enumeration("NameType")?
        .unwrap_or("UninterpretedTextString");
    n.finish()?;
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(KmsError::InvalidRequest(format!(
            "Name {value:?}: 1 to 256 bytes, no control characters"
        )));
    }
    Ok(Name {
        value: value.to_owned(),
        name_type: name_type.to_owned(),
    })
}

/// `CertificateAttributes`: the subject fields given (empty ones are absent). The issuer's
/// fields come from the issuer's certificate: a non-empty one is refused.
fn certificate_attributes(mut c: Fields<'_>) -> Result<crate::certificates::Subject, KmsError> {
    use crate::certificates::SubjectField;
    let mut subject = Vec::new();
    for (field, name, _) in SubjectField::ALL {
        if let Some(value) = c.text(&format!("CertificateSubject{name}"))? {
            if value.len() > 256 || value.chars().any(char::is_control) {
                return Err(KmsError::InvalidRequest(format!(
                    "CertificateSubject{name}: at most 256 bytes, no control characters"
                )));
            }
            if !value.is_empty() {
                subject.push((field, value.to_owned()));
            }
        }
        if c.text(&format!("CertificateIssuer{name}"))?
            .is_some_and(|v| !v.is_empty())
        {
            return Err(unsupported(
                c.path(),
                format!(
                    "CertificateIssuer{name} (the issuer's name is taken from its certificate)"
                ),
            ));
        }
    }
    c.finish()?;
    Ok(subject)
}

/// One vendor `Attribute`: the reference's `cosmian` tags, wrapping key and certification
/// options; others refused.
fn vendor_attribute<'a>(
    node: &'a Ttlv,
    out: &mut RequestAttributes<'a>,
    path: &str,
    purpose: Purpose,
) -> Result<(), KmsError> {
    let mut f = Fields::of(node, format!("{path}.Attribute"))?;
    let vendor = f.text("VendorIdentification")?.unwrap_or_default();
    let name = f.text("AttributeName")?.unwrap_or_default();
    let certify = purpose == Purpose::Certify;
    if certify && (vendor, name) == ("cosmian", "requested_validity_days") {
        out.validity_days = f.int("AttributeValue")?;
        return f.finish();
    }
    if certify && (vendor, name) == ("cosmian", "x509_extension_file") {
        let text = match f.node("AttributeValue")?.map(|n| &n.value) {
            Some(crate::kmip::ttlv::Value::ByteString(b)) => String::from_utf8(b.clone()).ok(),
            Some(crate::kmip::ttlv::Value::TextString(t)) => Some(t.clone()),
            _ => None,
        };
        out.extensions = Some(text.ok_or_else(|| {
            KmsError::InvalidRequest("x509_extension_file: UTF-8 text or bytes".into())
        })?);
        return f.finish();
    }
    let value = f.text("AttributeValue")?;
    f.finish()?;
    match (vendor, name) {
        ("cosmian", "tag") => {
            let tags: Vec<String> = serde_json::from_str(value.unwrap_or("[]")).map_err(|e| {
                KmsError::InvalidRequest(format!("tags must be a JSON array of strings: {e}"))
            })?;
            out.tags = Some(tags.into_iter().collect());
        }
        ("cosmian", "wrapping_key_id") => out.wrapping_key_id = value,
        (vendor, name) => {
            return Err(unsupported(
                path,
                format!("the vendor attribute {vendor}:{name}"),
            ));
        }
    }
    Ok(())
}

/// The reference's vendor attribute carrying an object's tags.
pub fn tag_attribute(tags: &BTreeSet<String>) -> Ttlv {
    let list: Vec<&String> = tags.iter().collect();
    structure(
        "Attribute",
        vec![
            text("VendorIdentification", "cosmian"),
            text("AttributeName", "tag"),
            text(
                "AttributeValue",
                &serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()),
            ),
        ],
    )
}

/// All attributes of an object, in the reference's order (tags only when asked).
pub fn of(o: &ManagedObject) -> Vec<Ttlv> {
    let mut out = Vec::new();
    if let Some(d) = o.activation_date {
        out.push(date("ActivationDate", d));
    }
    out.push(boolean("AlwaysSensitive", o.meta.sensitive));
    if let Some(algorithm) = o.algorithm {
        out.push(enumeration("CryptographicAlgorithm", algorithm.name()));
        if let Some(curve) = crate::kmip::pair::kind(o).and_then(|k| k.curve_name()) {
            out.push(structure(
                "CryptographicDomainParameters",
                vec![
                    int("Qlength", o.length_bits),
                    enumeration("RecommendedCurve", curve),
                ],
            ));
        }
        out.push(int("CryptographicLength", o.length_bits));
    }
    out.push(int("CryptographicUsageMask", o.usage_mask));
    if let Some(d) = o.deactivation_date {
        out.push(date("DeactivationDate", d));
    }
    if let Some(digest) = decode_hex(&o.meta.key_digest_hex).filter(|d| !d.is_empty()) {
        out.push(structure(
            "Digest",
            vec![
                enumeration("HashingAlgorithm", "SHA256"),
                bytes("DigestValue", &digest),
                enumeration("KeyFormatType", o.object_type.default_format()),
            ],
        ));
    }
    out.push(boolean("Extractable", !o.is_resident()));
    out.push(date("InitialDate", o.created_at));
    out.push(enumeration("KeyFormatType", o.object_type.default_format()));
    out.push(date("LastChangeDate", o.last_change));
    out.push(interval("LeaseTime", 3600));
    for link in &o.meta.links {
        out.push(structure(
            "Link",
            vec![
                enumeration("LinkType", &link.link_type),
                text("LinkedObjectIdentifier", &link.uid),
            ],
        ));
    }
    for name in &o.meta.names {
        out.push(structure(
            "Name",
            vec![
                text("NameValue", &name.value),
                enumeration("NameType", &name.name_type),
            ],
        ));
    }
    out.push(boolean("NeverExtractable", o.is_resident()));
    out.push(enumeration("ObjectType", o.object_type.name()));
    out.push(date("OriginalCreationDate", o.created_at));
    out.push(structure(
        "RandomNumberGenerator",
        vec![
            enumeration("RNGAlgorithm", "ANSI_X931"),
            enumeration("CryptographicAlgorithm", "AES"),
            int("CryptographicLength", 256),
        ],
    ));
    if o.meta.rotate_interval.is_some() {
        out.push(boolean("RotateAutomatic", true));
    }
    if let Some(generation) = o.meta.rotate_generation {
        out.push(int("RotateGeneration", generation));
    }
    if o.meta.rotate_generation.is_some() || o.meta.rotate_interval.is_some() {
        out.push(long("RotateInterval", o.meta.rotate_interval.unwrap_or(0)));
    }
    if o.meta.rotate_generation.is_some() {
        out.push(boolean(
            "RotateLatest",
            o.meta
                .links
                .iter()
                .all(|l| l.link_type != "ReplacementObjectLink"),
        ));
    }
    if let Some(offset) = o.meta.rotate_offset {
        out.push(long("RotateOffset", offset));
    }
    out.push(boolean("Sensitive", o.meta.sensitive));
    out.push(text("ShortUniqueIdentifier", ""));
    out.push(enumeration("State", o.state.name()));
    out.push(text("UniqueIdentifier", &o.uid));
    for v in &o.meta.vendor {
        let mut children = vec![
            text("VendorIdentification", &v.vendor),
            text("AttributeName", &v.name),
        ];
        if let Ok(value) = Ttlv::from_json(&v.value) {
            children.push(value);
        }
        out.push(structure("Attribute", children));
    }
    out
}
