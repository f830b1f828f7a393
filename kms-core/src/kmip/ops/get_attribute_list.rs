//! GetAttributeList: the names of the attributes an object has. Any grantee may ask.

use crate::error::KmsError;
use crate::kmip::attributes;
use crate::kmip::build::{enumeration, structure, text};
use crate::kmip::fields::Fields;
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "GetAttributeList")?;
    let id = required(f.text("UniqueIdentifier")?)?;
    f.finish()?;
    let o = kms
        .resolve_one(user, id, Operation::GetAttributeList, || {
            KmsError::ObjectNotFound(id.to_owned())
        })
        .await?;
    let mut names: Vec<String> = Vec::new();
    for a in attributes::of(&o) {
        if !names.contains(&a.tag) {
            names.push(a.tag);
        }
    }
    let mut children = vec![text("UniqueIdentifier", &o.uid)];
    children.extend(names.iter().map(|n| enumeration("AttributeReference", n)));
    Ok(Done::new(
        structure("GetAttributeListResponse", children),
        o.uid,
    ))
}
