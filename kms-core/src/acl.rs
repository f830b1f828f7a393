//! The one access rule. The owner may do everything with an object; another user needs the
//! grant of the operation (given to them or to everyone, `*`); any grant at all lets a user
//! see the object (GetAttributes, GetAttributeList, Locate). A public key is public: any
//! grantee of either half of its key pair may read it (Get, Export, its attributes). Managing the grants of an
//! object is for its owner alone. Every operation and the `/access/*` endpoints ask here.

use std::collections::BTreeSet;

use crate::error::KmsError;
use crate::kmip::operation::Operation;
use crate::object::{ManagedObject, ObjectType};
use crate::store::Store;

/// The grants a user holds on one object, directly or through `*`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Granted(pub BTreeSet<String>);

/// What is asked of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Running a KMIP operation on it.
    Run(Operation),
    /// Granting, revoking or listing its access rights.
    ManageGrants,
}

/// The rule itself, a pure function.
pub fn may(user: &str, object: &ManagedObject, granted: &Granted, access: Access) -> bool {
    if object.owner == user {
        return true;
    }
    match access {
        Access::ManageGrants => false,
        Access::Run(Operation::GetAttributes | Operation::GetAttributeList | Operation::Locate) => {
            !granted.0.is_empty()
        }
        Access::Run(op) => op.grant().is_some_and(|g| granted.0.contains(g)),
    }
}

/// [`may`] with the user's grants read from the store (not read at all for the owner).
pub async fn check(
    store: &Store,
    user: &str,
    object: &ManagedObject,
    access: Access,
) -> Result<bool, KmsError> {
    if object.owner == user {
        return Ok(true);
    }
    if access == Access::ManageGrants {
        return Ok(false);
    }
    let granted = Granted(store.granted(&object.uid, user).await?);
    if may(user, object, &granted, access) {
        return Ok(true);
    }
    if object.object_type == ObjectType::PublicKey
        && matches!(
            access,
            Access::Run(
                Operation::Get
                    | Operation::Export
                    | Operation::GetAttributes
                    | Operation::GetAttributeList
            )
        )
    {
        if !granted.0.is_empty() {
            return Ok(true);
        }
        for link in object
            .meta
            .links
            .iter()
            .filter(|l| l.link_type == "PrivateKeyLink")
        {
            let Some(private) = store.load(&link.uid).await? else {
                continue;
            };
            if private.owner == user || !store.granted(&private.uid, user).await?.is_empty() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::State;
    use crate::object::tests::key;

    fn grants(names: &[&str]) -> Granted {
        Granted(names.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn the_owner_may_everything_others_what_they_were_granted() {
        let o = key(State::Active, None, None);
        for op in Operation::ALL {
            assert!(may("o", &o, &Granted::default(), Access::Run(*op)));
            assert!(!may("bob", &o, &Granted::default(), Access::Run(*op)));
        }
        assert!(may("o", &o, &Granted::default(), Access::ManageGrants));
        let encrypt = grants(&["encrypt"]);
        assert!(may("bob", &o, &encrypt, Access::Run(Operation::Encrypt)));
        assert!(!may("bob", &o, &encrypt, Access::Run(Operation::Decrypt)));
        assert!(!may("bob", &o, &encrypt, Access::Run(Operation::Export)));
        assert!(!may("bob", &o, &encrypt, Access::ManageGrants));
        // Any grant shows the object.
        assert!(may(
            "bob",
            &o,
            &encrypt,
            Access::Run(Operation::GetAttributes)
        ));
        assert!(may("bob", &o, &encrypt, Access::Run(Operation::Locate)));
        // The get grant is not the export grant.
        let get = grants(&["get"]);
        assert!(may("bob", &o, &get, Access::Run(Operation::Get)));
        assert!(!may("bob", &o, &get, Access::Run(Operation::Export)));
    }
}
