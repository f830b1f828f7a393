//! Destroy: a key that is not Active loses its material (Destroyed, or Destroyed_Compromised);
//! with `Remove` the object goes entirely (its uid stays retired).

use crate::error::KmsError;
use crate::kmip::attributes;
use crate::kmip::build::{structure, text};
use crate::kmip::fields::Fields;
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::{ObjectType, State, now};

pub struct Request<'a> {
    pub id: &'a str,
    pub expected: Option<ObjectType>,
    pub remove: bool,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "Destroy")?;
        let id = required(f.text("UniqueIdentifier")?)?;
        let expected = f
            .enumeration("ExpectedObjectType")?
            .map(attributes::object_type)
            .transpose()?;
        let remove = f.boolean("Remove")?.unwrap_or(false);
        // As for Revoke: a symmetric key has no linked objects to destroy with it.
        f.boolean("Cascade")?;
        f.finish()?;
        Ok(Self {
            id,
            expected,
            remove,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let Request {
        id,
        expected,
        remove,
    } = Request::parse(node)?;
    let objects = kms.resolve(user, id, Operation::Destroy).await?;
    let objects: Vec<_> = objects
        .into_iter()
        .filter(|o| expected.is_none_or(|t| t == o.object_type))
        .collect();
    if objects.is_empty() {
        return Err(KmsError::ItemNotFound(id.to_owned()));
    }
    if objects.iter().any(|o| o.state == State::Active) {
        return Err(KmsError::WrongState("DENIED".into()));
    }
    if objects.iter().any(|o| o.is_resident()) {
        kms.require_hsm_admin(user, "destroy")?;
    }
    let mut uids = Vec::new();
    for mut o in objects {
        if o.is_resident() && !o.state.is_destroyed() {
            let (hsm, label) = kms.hsm_key(&o.uid)?;
            hsm.destroy_key(&label)?;
        }
        if remove {
            kms.store.remove(&o.uid).await?;
        } else if !o.state.is_destroyed() {
            o.state = if o.state == State::Compromised {
                State::DestroyedCompromised
            } else {
                State::Destroyed
            };
            o.last_change = now();
            // The material goes with the object: nothing usable stays in the database.
            o.wrapped_key.clear();
            kms.store.destroy(&o).await?;
        }
        uids.push(o.uid);
    }
    Ok(Done::new(
        structure("DestroyResponse", vec![text("UniqueIdentifier", id)]),
        uids.join(","),
    ))
}
