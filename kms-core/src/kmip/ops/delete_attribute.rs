//! DeleteAttribute: removes an instance (`CurrentAttribute`) or every instance
//! (`AttributeReference`) of a changeable attribute.

use crate::error::KmsError;
use crate::kmip::build::{structure, text};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::mutable::{self, Mutable};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::{Enumeration, Ttlv, Value};
use crate::object::Name;

/// The attribute an `AttributeReference` names, as a value-less [`Mutable`].
fn by_reference(name: &str) -> Result<Mutable, KmsError> {
    Ok(match name {
        "Name" => Mutable::Name(Name {
            value: String::new(),
            name_type: String::new(),
        }),
        "DeactivationDate" => Mutable::DeactivationDate(0),
        "RotateInterval" => Mutable::RotateInterval(0),
        "RotateOffset" => Mutable::RotateOffset(0),
        "RotateAutomatic" => Mutable::RotateAutomatic(false),
        "Tag" => Mutable::Tags(Default::default()),
        other => {
            return Err(unsupported(
                "DeleteAttribute",
                format!("deleting {other} by reference"),
            ));
        }
    })
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "DeleteAttribute")?;
    let id = required(f.text("UniqueIdentifier")?)?;
    let current = f.node("CurrentAttribute")?;
    let reference = f.node("AttributeReference")?;
    f.finish()?;
    let (which, all) = match (current, reference) {
        (Some(c), None) => (
            Mutable::parse(c, "DeleteAttribute.CurrentAttribute")?,
            false,
        ),
        (None, Some(r)) => match &r.value {
            Value::Enumeration(Enumeration::Name(n)) | Value::TextString(n) => {
                (by_reference(n)?, true)
            }
            _ => {
                return Err(KmsError::InvalidRequest(
                    "DeleteAttribute.AttributeReference must name an attribute".into(),
                ));
            }
        },
        _ => {
            return Err(KmsError::InvalidRequest(
                "DeleteAttribute needs exactly one of CurrentAttribute and AttributeReference"
                    .into(),
            ));
        }
    };
    let mut o = kms
        .resolve_one(user, id, Operation::DeleteAttribute, || {
            KmsError::ItemNotFound(id.to_owned())
        })
        .await?;
    mutable::delete(&mut o, &which, all)?;
    kms.store.update(&o).await?;
    Ok(Done::new(
        structure(
            "DeleteAttributeResponse",
            vec![text("UniqueIdentifier", &o.uid)],
        ),
        o.uid,
    ))
}
