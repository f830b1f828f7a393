//! The managed object a request carries (Import, Register) or a response returns (Get,
//! Export): a symmetric key or secret data (a `KeyBlock`), or an opaque object. Reading
//! refuses what is not implemented by name; writing follows the reference's layout.

use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::kmip::attributes::{self, Purpose, RequestAttributes};
use crate::kmip::build::{bytes, enumeration, int, structure};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::ttlv::{Ttlv, Value};
use crate::kmip::wrap::{self, WrapSpec};
use crate::object::{ManagedObject, ObjectType};

/// Largest secret data or opaque object accepted (keys are checked by length).
pub const MAX_DATA: usize = 64 * 1024;

/// A `KeyBlock`: its material in clear, or wrapped by a key of this KMS.
pub struct KeyBlock<'a> {
    pub material: Zeroizing<Vec<u8>>,
    /// The `KeyFormatType` the material is in (a transparent EC public key is turned into
    /// SubjectPublicKeyInfo when read, and reported as `X509`).
    pub format: Option<&'a str>,
    pub wrapped: Option<WrapSpec<'a>>,
    pub algorithm: Option<&'a str>,
    pub length: Option<i32>,
    /// The attributes inside `KeyValue` (an object exported as JSON TTLV carries them).
    pub attributes: RequestAttributes<'a>,
}

/// The object in a request.
pub struct Payload<'a> {
    pub object_type: ObjectType,
    /// `SecretDataType` or `OpaqueDataType`.
    pub data_type: Option<&'a str>,
    pub block: KeyBlock<'a>,
}

/// Reads the object of type `object_type` from the request's fields (its structure is named
/// after the type).
pub fn parse<'a>(f: &mut Fields<'a>, object_type: ObjectType) -> Result<Payload<'a>, KmsError> {
    let name = object_type.name();
    let mut o = f
        .structure(name)?
        .ok_or_else(|| KmsError::InvalidRequest(format!("{}: missing {name}", f.path())))?;
    let payload = match object_type {
        ObjectType::SymmetricKey | ObjectType::PrivateKey | ObjectType::PublicKey => Payload {
            object_type,
            data_type: None,
            block: key_block(&mut o, object_type)?,
        },
        ObjectType::SecretData => Payload {
            object_type,
            data_type: Some(o.enumeration("SecretDataType")?.unwrap_or("Password")),
            block: key_block(&mut o, object_type)?,
        },
        ObjectType::Certificate => {
            if let Some(t) = o.enumeration("CertificateType")?.filter(|t| *t != "X509") {
                return Err(unsupported(o.path(), format!("CertificateType {t}")));
            }
            let value = o.bytes("CertificateValue")?.ok_or_else(|| {
                KmsError::InvalidRequest(format!("{}: missing CertificateValue", o.path()))
            })?;
            Payload {
                object_type,
                data_type: None,
                block: KeyBlock {
                    material: Zeroizing::new(value.to_vec()),
                    format: Some("X509"),
                    wrapped: None,
                    algorithm: None,
                    length: None,
                    attributes: RequestAttributes::default(),
                },
            }
        }
        ObjectType::OpaqueObject => {
            let data_type = o.enumeration("OpaqueDataType")?.unwrap_or("Vendor");
            let value = o.bytes("OpaqueDataValue")?.ok_or_else(|| {
                KmsError::InvalidRequest(format!("{}: missing OpaqueDataValue", o.path()))
            })?;
            Payload {
                object_type,
                data_type: Some(data_type),
                block: KeyBlock {
                    material: Zeroizing::new(value.to_vec()),
                    format: None,
                    wrapped: None,
                    algorithm: None,
                    length: None,
                    attributes: RequestAttributes::default(),
                },
            }
        }
        other => {
            return Err(unsupported(
                f.path(),
                format!("ObjectType {}", other.name()),
            ));
        }
    };
    o.finish()?;
    if payload.block.material.len() > MAX_DATA {
        return Err(KmsError::InvalidRequest(format!(
            "{name}: at most {MAX_DATA} bytes"
        )));
    }
    Ok(payload)
}

fn key_block<'a>(
    holder: &mut Fields<'a>,
    object_type: ObjectType,
) -> Result<KeyBlock<'a>, KmsError> {
    let mut f = holder
        .structure("KeyBlock")?
        .ok_or_else(|| KmsError::InvalidRequest(format!("{}: missing KeyBlock", holder.path())))?;
    let mut format = f.enumeration("KeyFormatType")?;
    if let Some(name) = format {
        if !format_fits(object_type, name) {
            return Err(unsupported(
                f.path(),
                format!("KeyFormatType {name} for a {}", object_type.name()),
            ));
        }
    }
    let algorithm = f.enumeration("CryptographicAlgorithm")?;
    let length = f.int("CryptographicLength")?;
    let value = f
        .node("KeyValue")?
        .ok_or_else(|| KmsError::InvalidRequest(format!("{}: missing KeyValue", f.path())))?;
    let wrapped = f
        .structure("KeyWrappingData")?
        .map(wrap::parse)
        .transpose()?;
    let (material, attributes) = match (&value.value, &wrapped) {
        (Value::ByteString(bytes), Some(_)) => {
            (Zeroizing::new(bytes.clone()), RequestAttributes::default())
        }
        (Value::ByteString(_), None) => {
            return Err(KmsError::InvalidRequest(format!(
                "{}: a KeyValue given as bytes must come with its KeyWrappingData",
                f.path()
            )));
        }
        (_, Some(_)) => {
            return Err(unsupported(
                f.path(),
                "KeyWrappingData with a structured KeyValue (only the key bytes are wrapped here)",
            ));
        }
        (_, None) => {
            let (material, attributes) = key_value(value, f.path())?;
            if format == Some("TransparentECPublicKey") {
                format = Some("X509");
            }
            (material, attributes)
        }
    };
    f.finish()?;
    Ok(KeyBlock {
        material,
        format,
        wrapped,
        algorithm,
        length,
        attributes,
    })
}

/// True when a key of `object_type` can be given in the KMIP key format `format`.
pub fn format_fits(object_type: ObjectType, format: &str) -> bool {
    match object_type {
        ObjectType::SymmetricKey => matches!(format, "Raw" | "TransparentSymmetricKey"),
        ObjectType::PrivateKey => {
            matches!(format, "PKCS8" | "PKCS1" | "ECPrivateKey" | "PKCS12")
        }
        ObjectType::Certificate => format == "X509",
        ObjectType::PublicKey => {
            matches!(
                format,
                "PKCS8" | "X509" | "PKCS1" | "TransparentECPublicKey"
            )
        }
        ObjectType::OpaqueObject => format == "Opaque",
        _ => format == "Raw",
    }
}

/// A clear `KeyValue`: `KeyMaterial` (bytes, a transparent symmetric key's `Key`, or a
/// transparent EC public key's point, returned as SubjectPublicKeyInfo) and attributes.
pub fn key_value<'a>(
    value: &'a Ttlv,
    path: &str,
) -> Result<(Zeroizing<Vec<u8>>, RequestAttributes<'a>), KmsError> {
    let path = format!("{path}.KeyValue");
    if value.tag != "KeyValue" {
        return Err(KmsError::InvalidRequest(format!(
            "{path}: expected a KeyValue, found {}",
            value.tag
        )));
    }
    let mut v = Fields::of(value, path.clone())?;
    let missing = || KmsError::InvalidRequest(format!("{path}: missing KeyMaterial"));
    let material = match v.node("KeyMaterial")?.map(|m| &m.value) {
        Some(Value::ByteString(raw)) => Zeroizing::new(raw.clone()),
        Some(Value::Structure(_)) => {
            let mut m = v.structure("KeyMaterial")?.ok_or_else(missing)?;
            let material = match m.bytes("QString")? {
                Some(point) => {
                    let curve = m.enumeration("RecommendedCurve")?.unwrap_or_default();
                    let curve = crate::asymmetric::Curve::parse(curve)
                        .ok_or_else(|| unsupported(&path, format!("RecommendedCurve {curve:?}")))?;
                    crate::asymmetric::ec_point_to_spki(curve, point)?
                }
                None => m.bytes("Key")?.ok_or_else(missing)?.to_vec(),
            };
            m.finish()?;
            Zeroizing::new(material)
        }
        _ => return Err(missing()),
    };
    let attributes = attributes::parse(v.node("Attributes")?, &path, Purpose::Import)?;
    v.finish()?;
    Ok((material, attributes))
}

/// The object node of a Get/Export answer: `key_value` is the clear `KeyValue` structure or
/// the wrapped bytes, `wrapping` the `KeyWrappingData` when wrapped.
pub fn object_node(
    o: &ManagedObject,
    format_name: &str,
    key_value: Ttlv,
    wrapping: Option<Ttlv>,
) -> Ttlv {
    let data_type = o.meta.data_type.as_deref().unwrap_or("Vendor");
    let bytes_of = |value: Value, tag: &str| match value {
        Value::Structure(children) => children
            .into_iter()
            .find(|c| c.tag == "KeyMaterial")
            .map(|c| Ttlv::new(tag, c.value))
            .unwrap_or_else(|| bytes(tag, &[])),
        other => Ttlv::new(tag, other),
    };
    match o.object_type {
        ObjectType::Certificate if wrapping.is_none() => structure(
            "Certificate",
            vec![
                enumeration("CertificateType", "X509"),
                bytes_of(key_value.value, "CertificateValue"),
            ],
        ),
        ObjectType::OpaqueObject => structure(
            "OpaqueObject",
            vec![
                enumeration("OpaqueDataType", data_type),
                // An opaque object has no key block: its value is the bytes themselves.
                bytes_of(key_value.value, "OpaqueDataValue"),
            ],
        ),
        object_type => {
            let mut block = vec![enumeration("KeyFormatType", format_name), key_value];
            if let Some(algorithm) = o.algorithm {
                block.push(enumeration("CryptographicAlgorithm", algorithm.name()));
                block.push(int("CryptographicLength", o.length_bits));
            }
            block.extend(wrapping);
            let mut children = Vec::new();
            if object_type == ObjectType::SecretData {
                children.push(enumeration("SecretDataType", data_type));
            }
            children.push(structure("KeyBlock", block));
            structure(object_type.name(), children)
        }
    }
}
