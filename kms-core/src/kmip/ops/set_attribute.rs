//! SetAttribute: gives an attribute its value (replacing any); AddAttribute and
//! ModifyAttribute share this file's runner with their own rule.

use crate::error::KmsError;
use crate::kmip::build::{structure, text};
use crate::kmip::fields::Fields;
use crate::kmip::kms::{Done, Kms};
use crate::kmip::mutable::{self, Change, Mutable};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    change(kms, user, node, Operation::SetAttribute, Change::Set).await
}

/// Reads `UniqueIdentifier`, `NewAttribute` (and for ModifyAttribute an optional
/// `CurrentAttribute`), then applies the change to the object the caller may change.
pub async fn change(
    kms: &Kms,
    user: &str,
    node: &Ttlv,
    op: Operation,
    change: Change,
) -> Result<Done, KmsError> {
    let name = op.name();
    let mut f = Fields::of(node, name)?;
    let id = required(f.text("UniqueIdentifier")?)?;
    let new = f
        .node("NewAttribute")?
        .ok_or_else(|| KmsError::InvalidRequest(format!("{name}: NewAttribute is required")))?;
    let new = Mutable::parse(new, &format!("{name}.NewAttribute"))?;
    let current = match change {
        Change::Modify => f
            .node("CurrentAttribute")?
            .map(|c| Mutable::parse(c, &format!("{name}.CurrentAttribute")))
            .transpose()?,
        Change::Set | Change::Add => None,
    };
    f.finish()?;
    let mut o = kms
        .resolve_one(user, id, op, || KmsError::ItemNotFound(id.to_owned()))
        .await?;
    mutable::apply(&mut o, change, new, current.as_ref())?;
    kms.store.update(&o).await?;
    Ok(Done::new(
        structure(
            &format!("{name}Response"),
            vec![text("UniqueIdentifier", &o.uid)],
        ),
        o.uid,
    ))
}
