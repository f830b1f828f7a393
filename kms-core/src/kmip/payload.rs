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
        ObjectType::SymmetricKey => Payload {
            object_type,
            data_type: None,
            block: key_block(&mut o, object_type)?,
        },
        ObjectType::SecretData => Payload {
            object_type,
            data_type: Some(o.enumeration("SecretDataType")?.unwrap_or("Password")),
            block: key_block(&mut o, object_type)?,
        },
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
    if let Some(format) = f.enumeration("KeyFormatType")? {
        let fine = format == "Raw"
            || (object_type == ObjectType::SymmetricKey && format == "TransparentSymmetricKey");
        if !fine {
            return Err(unsupported(f.path(), format!("KeyFormatType {format}")));
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
        (_, None) => key_value(value, f.path())?,
    };
    f.finish()?;
    Ok(KeyBlock {
        material,
        wrapped,
        algorithm,
        length,
        attributes,
    })
}

/// A clear `KeyValue`: `KeyMaterial` (bytes, or a transparent key's `Key`) and attributes.
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
            let key = m.bytes("Key")?.ok_or_else(missing)?;
            m.finish()?;
            Zeroizing::new(key.to_vec())
        }
        _ => return Err(missing()),
    };
    let attributes = attributes::parse(v.node("Attributes")?, &path, Purpose::New)?;
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
    match o.object_type {
        ObjectType::OpaqueObject => structure(
            "OpaqueObject",
            vec![
                enumeration("OpaqueDataType", data_type),
                // An opaque object has no key block: its value is the bytes themselves.
                match key_value.value {
                    Value::Structure(children) => children
                        .into_iter()
                        .find(|c| c.tag == "KeyMaterial")
                        .map(|c| Ttlv::new("OpaqueDataValue", c.value))
                        .unwrap_or_else(|| bytes("OpaqueDataValue", &[])),
                    other => Ttlv::new("OpaqueDataValue", other),
                },
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
