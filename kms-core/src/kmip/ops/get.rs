//! Get and Export: a key's material in clear, as Raw bytes or a transparent key, with its
//! attributes. Get refuses revoked keys (the reference's rule); Export returns them as they
//! are. HSM-resident and `Sensitive` keys are never returned.

use crate::error::KmsError;
use crate::kmip::attributes::{self, tag_attribute};
use crate::kmip::build::{bytes, enumeration, int, structure, text};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::State;

/// The key formats a symmetric key can be returned in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Transparent,
}

pub struct Request<'a> {
    pub id: &'a str,
    pub format: Format,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv, op: Operation) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, op.name())?;
        let id = required(f.text("UniqueIdentifier")?)?;
        let format = match f.enumeration("KeyFormatType")? {
            None | Some("Raw") => Format::Raw,
            Some("TransparentSymmetricKey") => Format::Transparent,
            Some(other) => return Err(unsupported(f.path(), format!("KeyFormatType {other}"))),
        };
        // Keys are stored as given (never wrapped by another key), so "as registered" and
        // "not wrapped" both mean the key in clear.
        f.enumeration("KeyWrapType")?;
        f.finish()?;
        Ok(Self { id, format })
    }
}

pub async fn run(kms: &Kms, user: &str, op: Operation, node: &Ttlv) -> Result<Done, KmsError> {
    let Request { id, format } = Request::parse(node, op)?;
    let export = op == Operation::Export;
    let o = kms
        .resolve_one(user, id, op, || KmsError::ObjectNotFound(id.to_owned()))
        .await?;
    if o.is_resident() {
        return Err(KmsError::InvalidRequest(format!(
            "the key {} lives in the HSM and is not extractable: Get and Export are refused",
            o.uid
        )));
    }
    match (o.state, export) {
        (s, false) if s.is_destroyed() => return Err(KmsError::ObjectDestroyed),
        (State::Deactivated | State::Compromised, false) => {
            return Err(KmsError::WrongState("DENIED".into()));
        }
        (s, true) if s.is_destroyed() => return Err(KmsError::ObjectNotFound(id.to_owned())),
        _ => {}
    }
    if o.meta.sensitive {
        return Err(KmsError::Sensitive);
    }
    let key = kms.keys.unwrap(o.wrapping, &o.uid, &o.wrapped_key)?;
    let mut key_attributes = attributes::of(&o);
    key_attributes.push(tag_attribute(&o.tags));
    let (format_name, material) = match format {
        Format::Transparent => (
            "TransparentSymmetricKey",
            structure("KeyMaterial", vec![bytes("Key", &key)]),
        ),
        Format::Raw => ("Raw", bytes("KeyMaterial", &key)),
    };
    let symmetric_key = structure(
        "SymmetricKey",
        vec![structure(
            "KeyBlock",
            vec![
                enumeration("KeyFormatType", format_name),
                structure(
                    "KeyValue",
                    vec![material, structure("Attributes", key_attributes)],
                ),
                enumeration("CryptographicAlgorithm", o.algorithm.name()),
                int("CryptographicLength", o.length_bits),
            ],
        )],
    );
    let mut children = vec![
        enumeration("ObjectType", o.object_type.name()),
        text("UniqueIdentifier", &o.uid),
    ];
    if export {
        let mut all = attributes::of(&o);
        all.push(tag_attribute(&o.tags));
        children.push(structure("Attributes", all));
    }
    children.push(symmetric_key);
    let tag = if export {
        "ExportResponse"
    } else {
        "GetResponse"
    };
    Ok(Done::new(structure(tag, children), o.uid))
}
