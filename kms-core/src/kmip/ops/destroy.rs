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
    /// Also destroy the other half of a key pair.
    pub cascade: bool,
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
        let cascade = f.boolean("Cascade")?.unwrap_or(false);
        f.finish()?;
        Ok(Self {
            id,
            expected,
            remove,
            cascade,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let Request {
        id,
        expected,
        remove,
        cascade,
    } = Request::parse(node)?;
    let objects = kms.resolve(user, id, Operation::Destroy).await?;
    let objects: Vec<_> = objects
        .into_iter()
        .filter(|o| expected.is_none_or(|t| t == o.object_type))
        .collect();
    if objects.is_empty() {
        return Err(KmsError::ItemNotFound(id.to_owned()));
    }
    let objects = if cascade {
        kms.with_pair_halves(user, objects, Operation::Destroy)
            .await?
    } else {
        objects
    };
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
            if o.object_type == ObjectType::PrivateKey {
                hsm.destroy_key_pair(&label)?;
            } else {
                hsm.destroy_key(&label)?;
            }
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
        kms.signing.forget(&o.uid);
        uids.push(o.uid);
    }
    Ok(Done::new(
        structure("DestroyResponse", vec![text("UniqueIdentifier", id)]),
        uids.join(","),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, create, fails, kms, leaf, run};
    use crate::object::State;

    #[tokio::test]
    async fn destroys_revoked_keys_and_retires_removed_uids() {
        let kms = kms().await;
        let uid = create(&kms, "alice", vec![]).await;
        assert_eq!(
            fails(&kms, "alice", by_uid("Destroy", &uid, vec![])).await,
            "Wrong_Key_Lifecycle_State: DENIED"
        );
        let revoke = by_uid(
            "Revoke",
            &uid,
            vec![json!({"tag": "RevocationReason", "value": [
            leaf("RevocationReasonCode", "Enumeration", json!("Unspecified"))]})],
        );
        assert!(run(&kms, "alice", revoke).await.is_ok());
        let wrong_type = by_uid(
            "Destroy",
            &uid,
            vec![leaf(
                "ExpectedObjectType",
                "Enumeration",
                json!("PrivateKey"),
            )],
        );
        assert!(
            fails(&kms, "alice", wrong_type)
                .await
                .starts_with("Item_Not_Found")
        );
        assert!(
            run(&kms, "alice", by_uid("Destroy", &uid, vec![]))
                .await
                .is_ok()
        );
        let o = kms.store.load(&uid).await.ok().flatten();
        assert_eq!(
            o.map(|o| (o.state, o.wrapped_key.is_empty())),
            Some((State::Destroyed, true))
        );
        let remove = by_uid(
            "Destroy",
            &uid,
            vec![leaf("Remove", "Boolean", json!(true))],
        );
        assert!(run(&kms, "alice", remove).await.is_ok());
        assert!(kms.store.load(&uid).await.ok().flatten().is_none());
        assert!(kms.store.uid_used(&uid).await.unwrap_or(false));
    }
}
