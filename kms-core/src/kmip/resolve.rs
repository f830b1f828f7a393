//! From the identifier a request names (a uid, or a JSON list of tags) to the objects the
//! caller may use for the operation, with the reference's errors. Access is decided by
//! [`crate::acl`], nowhere else.

use std::collections::BTreeSet;

use crate::acl::{self, Access};
use crate::error::KmsError;
use crate::kmip::kms::Kms;
use crate::kmip::operation::Operation;
use crate::object::{ManagedObject, ObjectType, State, now};

/// How a request names its object: one uid, or a JSON list of tags that must all match.
pub enum Target {
    Uid(String),
    Tags(BTreeSet<String>),
}

impl Target {
    pub fn parse(id: &str) -> Result<Self, KmsError> {
        if id.starts_with('[') {
            let tags: Vec<String> = serde_json::from_str(id)
                .map_err(|e| KmsError::InvalidRequest(format!("invalid tag list {id}: {e}")))?;
            Ok(Self::Tags(tags.into_iter().collect()))
        } else {
            Ok(Self::Uid(id.to_owned()))
        }
    }
}

/// The object types a cryptographic operation works with (checked again, by kind, where it
/// runs): symmetric keys for all but signatures; private keys sign and decrypt; public keys
/// verify and encrypt (a private key can too: its public half is derived).
fn usable_by(op: Operation) -> &'static [ObjectType] {
    match op {
        Operation::Sign => &[ObjectType::PrivateKey],
        Operation::SignatureVerify => &[
            ObjectType::PublicKey,
            ObjectType::PrivateKey,
            ObjectType::Certificate,
        ],
        Operation::Encrypt => &[
            ObjectType::SymmetricKey,
            ObjectType::PublicKey,
            ObjectType::PrivateKey,
            ObjectType::Certificate,
        ],
        Operation::Decrypt => &[ObjectType::SymmetricKey, ObjectType::PrivateKey],
        _ => &[ObjectType::SymmetricKey],
    }
}

/// The identifier an operation on an existing object must carry.
pub fn required(id: Option<&str>) -> Result<&str, KmsError> {
    id.ok_or(KmsError::PlaceholderId)
}

impl Kms {
    /// The objects `id` names, as stored.
    async fn candidates(&self, id: &str) -> Result<(Vec<ManagedObject>, bool), KmsError> {
        Ok(match Target::parse(id)? {
            Target::Uid(uid) => (self.store.load(&uid).await?.into_iter().collect(), false),
            Target::Tags(tags) => {
                let mut all = Vec::new();
                for uid in self.store.uids_with_tags(&tags).await? {
                    all.extend(self.store.load(&uid).await?);
                }
                (all, true)
            }
        })
    }

    /// Applies the time-driven state changes and saves them.
    async fn settle(&self, o: &mut ManagedObject) -> Result<(), KmsError> {
        if o.settle(now()) {
            o.last_change = now();
            self.store.update(o).await?;
        }
        Ok(())
    }

    /// Keeps the candidates `user` may use for `op`. By tags, the caller's own objects win
    /// over shared ones: tags are anyone's to put on their own keys, so nobody can make
    /// someone's tag ambiguous or take it over by tagging a key of theirs.
    async fn allowed(
        &self,
        user: &str,
        candidates: Vec<ManagedObject>,
        by_tags: bool,
        op: Operation,
    ) -> Result<Vec<ManagedObject>, KmsError> {
        let mut allowed = Vec::new();
        for o in candidates {
            if acl::check(&self.store, user, &o, Access::Run(op)).await? {
                allowed.push(o);
            }
        }
        if by_tags && allowed.iter().any(|o| o.owner == user) {
            allowed.retain(|o| o.owner == user);
        }
        Ok(allowed)
    }

    /// Every object `id` names that `user` may use for `op`, settled.
    pub async fn resolve(
        &self,
        user: &str,
        id: &str,
        op: Operation,
    ) -> Result<Vec<ManagedObject>, KmsError> {
        let (candidates, by_tags) = self.candidates(id).await?;
        let mut found = self.allowed(user, candidates, by_tags, op).await?;
        for o in &mut found {
            self.settle(o).await?;
        }
        Ok(found)
    }

    /// The first object `id` names that `user` may use for `op`, or `missing`.
    pub async fn resolve_one(
        &self,
        user: &str,
        id: &str,
        op: Operation,
        missing: impl FnOnce() -> KmsError,
    ) -> Result<ManagedObject, KmsError> {
        self.resolve(user, id, op)
            .await?
            .into_iter()
            .next()
            .ok_or_else(missing)
    }

    /// The single live key a cryptographic operation names, with the reference's errors:
    /// not found, access denied (only when named by uid: by tags, keys the caller may not
    /// use do not exist for it), or ambiguous.
    pub async fn crypto_key(
        &self,
        user: &str,
        id: &str,
        op: Operation,
    ) -> Result<ManagedObject, KmsError> {
        let name = op.name();
        let grant = op.grant().unwrap_or_default();
        let (candidates, by_tags) = self.candidates(id).await?;
        let candidates: Vec<ManagedObject> = candidates
            .into_iter()
            .filter(|o| !o.state.is_destroyed())
            .collect();
        let found = candidates.len();
        let mut allowed = self.allowed(user, candidates, by_tags, op).await?;
        // Tags are on both halves of a key pair: by tags, an operation takes the objects of
        // the first type it works with (Sign the private key; Encrypt and SignatureVerify
        // the public key).
        let halves = |o: &ManagedObject| {
            matches!(
                o.object_type,
                ObjectType::PrivateKey | ObjectType::PublicKey | ObjectType::Certificate
            )
        };
        if by_tags && allowed.len() > 1 && allowed.iter().all(halves) {
            if let Some(first) = usable_by(op)
                .iter()
                .find(|t| allowed.iter().any(|o| o.object_type == **t))
            {
                allowed.retain(|o| o.object_type == *first);
            }
        }
        // Tags that name several keys of which only one can encrypt (after a re-key: the old
        // key keeps its tags to decrypt what it encrypted) name that one for Encrypt and MAC.
        if by_tags && allowed.len() > 1 && matches!(op, Operation::Encrypt | Operation::Mac) {
            let at = now();
            let usable: Vec<usize> = (0..allowed.len())
                .filter(|&i| {
                    let o = &allowed[i];
                    o.state.settled(o.activation_date, o.deactivation_date, at) == State::Active
                })
                .collect();
            if let [only] = usable.as_slice() {
                allowed = vec![allowed.swap_remove(*only)];
            }
        }
        match (found, allowed.len()) {
            (0, _) => Err(KmsError::KeyNotFound(format!(
                "{name}: key id: {id}, not found"
            ))),
            (_, 0) if by_tags => Err(KmsError::KeyNotFound(format!(
                "{name}: key id: {id}, not found"
            ))),
            (_, 0) => Err(KmsError::AccessDenied(format!(
                "{name}: the user {user} does not have permission to {grant} using the key: {id}"
            ))),
            (_, 1) => {
                let mut o = allowed.remove(0);
                if !usable_by(op).contains(&o.object_type) {
                    return Err(KmsError::InvalidRequest(format!(
                        "{name}: {} is a {}, not {}",
                        o.uid,
                        o.object_type.name(),
                        match op {
                            Operation::Sign => "a private key",
                            Operation::SignatureVerify => "a public or private key",
                            _ => "a key",
                        }
                    )));
                }
                self.settle(&mut o).await?;
                Ok(o)
            }
            (_, n) => {
                let uids: Vec<&str> = allowed.iter().map(|o| o.uid.as_str()).collect();
                Err(KmsError::InvalidRequest(format!(
                    "{name}: identifier '{id}' resolves to {n} valid keys {uids:?}; use a unique identifier"
                )))
            }
        }
    }
}
