//! Making new objects: the checks on the uid and tags a client chose, fresh AES key objects
//! wrapped by the active key-encryption key, and keys generated inside the HSM.

use std::collections::BTreeSet;

use crate::error::KmsError;
use crate::kmip::kms::Kms;
use crate::object::{Algorithm, ManagedObject, Meta, ObjectType, State, now};
use crate::wrapping::Wrapping;

/// The prefix that puts a key inside the HSM, matched exactly.
pub const HSM_PREFIX: &str = "hsm::";

/// Usage mask bits used here (KMIP 2.1, 3.19).
pub const MASK_ENCRYPT: i32 = 0x4;
pub const MASK_DECRYPT: i32 = 0x8;
pub const MASK_WRAP_KEY: i32 = 0x10;
pub const MASK_UNWRAP_KEY: i32 = 0x20;
pub const MASK_UNRESTRICTED: i32 = 0x0020_0000;
pub const DEFAULT_CREATE_MASK: i32 = 2108;

/// What a new object is, before its material exists.
pub struct NewKey {
    pub object_type: ObjectType,
    /// None for secret data and opaque objects.
    pub algorithm: Option<Algorithm>,
    /// `SecretDataType` or `OpaqueDataType`.
    pub data_type: Option<String>,
    pub owner: String,
    pub uid: String,
    pub length_bits: i32,
    pub usage_mask: i32,
    pub activation: Option<i64>,
    pub tags: BTreeSet<String>,
    pub sensitive: bool,
}

impl NewKey {
    /// The object, with no key material yet (the caller sets `wrapped_key` and `wrapping`):
    /// Active when its activation date has come, else PreActive.
    fn object(self) -> ManagedObject {
        let t = now();
        let mut tags = self.tags;
        tags.extend(self.object_type.system_tag().map(str::to_owned));
        ManagedObject {
            uid: self.uid,
            owner: self.owner,
            object_type: self.object_type,
            state: match self.activation {
                Some(d) if d <= t => State::Active,
                _ => State::PreActive,
            },
            algorithm: self.algorithm,
            length_bits: self.length_bits,
            usage_mask: self.usage_mask,
            activation_date: self.activation,
            deactivation_date: None,
            created_at: t,
            last_change: t,
            wrapped_key: Vec::new(),
            wrapping: Wrapping::Master,
            meta: Meta {
                sensitive: self.sensitive,
                data_type: self.data_type,
                ..Meta::default()
            },
            tags,
            rotate_at: None,
        }
    }
}

/// User tags: not empty, not starting with `_` (system tags), at most 256 bytes, no control
/// characters.
pub fn check_user_tags(tags: &BTreeSet<String>) -> Result<(), KmsError> {
    for tag in tags {
        if tag.is_empty() || tag.starts_with('_') {
            return Err(KmsError::InvalidRequest(format!(
                "tag {tag:?}: user tags must not be empty or start with _"
            )));
        }
        if tag.len() > 256 || tag.chars().any(char::is_control) {
            return Err(KmsError::InvalidRequest(format!(
                "tag {tag:?}: at most 256 bytes, no control characters"
            )));
        }
    }
    Ok(())
}

/// The uid of a new object: the client's choice, checked, or [`fresh_uid`].
pub fn new_uid(chosen: Option<&str>) -> Result<String, KmsError> {
    match chosen {
        Some(uid) if !uid.is_empty() => {
            check_new_uid(uid)?;
            Ok(uid.to_owned())
        }
        _ => Ok(fresh_uid()),
    }
}

/// A new identifier: a UUID version 7 (RFC 9562), whose first 48 bits are the creation time in
/// milliseconds and the other 74 random. Clients see a UUID as before (they treat it as an
/// opaque string); the database sees identifiers in creation order, so new keys land at the end
/// of the uid indexes instead of on a random page each — a group of Creates dirties a few index
/// pages, not one per key, and Create stays as fast as the table grows. (The creation time it
/// shows is no secret: it is the object's InitialDate attribute.)
pub fn fresh_uid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A uid a client chose for a new object: no control characters, no whitespace at either end
/// (it would log and compare as another), and nothing that looks like the HSM prefix without
/// being it (`HSM::`, ` hsm::`, `hsm:`): such a key would silently be a software key.
fn check_new_uid(uid: &str) -> Result<(), KmsError> {
    if uid.len() > 256 || uid.chars().any(char::is_control) || uid.trim() != uid {
        return Err(KmsError::InvalidRequest(format!(
            "UniqueIdentifier {uid:?}: at most 256 bytes, no control characters, no leading or trailing whitespace"
        )));
    }
    let folded = uid.trim_start().to_ascii_lowercase();
    if folded.starts_with("hsm:") && !uid.starts_with(HSM_PREFIX) {
        return Err(KmsError::InvalidRequest(format!(
            "UniqueIdentifier {uid:?} looks like an HSM key but is not one: HSM keys are named hsm::<slot>::<label> exactly"
        )));
    }
    Ok(())
}

impl Kms {
    /// A new object holding `key` (its material), wrapped by the active key-encryption key.
    pub fn new_key(&self, new: NewKey, key: &[u8]) -> Result<ManagedObject, KmsError> {
        let (wrapping, wrapped) = self.keys.wrap(&new.uid, key)?;
        let mut object = NewKey {
            length_bits: i32::try_from(key.len() * 8).unwrap_or(0),
            ..new
        }
        .object();
        object.wrapped_key = wrapped;
        object.wrapping = wrapping;
        object.meta.key_digest_hex = crate::kmip::hex_upper(&crate::crypto::sha256(key));
        Ok(object)
    }

    /// The HSM and the key label of an `hsm::<slot>::<label>` identifier.
    pub fn hsm_key(&self, uid: &str) -> Result<(&crate::hsm::Hsm, String), KmsError> {
        let hsm = self.keys.hsm.as_deref().ok_or_else(|| {
            KmsError::InvalidRequest(format!("{uid}: no HSM is configured on this KMS"))
        })?;
        let mut parts = uid.splitn(3, "::");
        let (Some("hsm"), Some(slot), Some(label)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KmsError::InvalidRequest(format!(
                "{uid}: HSM keys are named hsm::<slot>::<label>"
            )));
        };
        if slot.parse::<u64>().ok() != Some(hsm.slot_id()) || label.is_empty() {
            return Err(KmsError::InvalidRequest(format!(
                "{uid}: this KMS uses HSM slot {}; name the key hsm::{}::<label>",
                hsm.slot_id(),
                hsm.slot_id()
            )));
        }
        Ok((hsm, label.to_owned()))
    }

    pub fn require_hsm_admin(&self, user: &str, what: &str) -> Result<(), KmsError> {
        if self.keys.hsm_admins.iter().any(|a| a == user) {
            Ok(())
        } else {
            Err(KmsError::AccessDenied(format!(
                "only HSM administrators (--hsm-admin) may {what} keys in the HSM"
            )))
        }
    }

    /// The private half of a key pair generated inside the HSM (`hsm::<slot>::<label>`, never
    /// extractable), and its public key as SPKI.
    pub async fn new_pair_in_hsm(
        &self,
        new: NewKey,
        kind: crate::asymmetric::KeyKind,
        public_uid: &str,
    ) -> Result<(ManagedObject, Vec<u8>), KmsError> {
        self.require_hsm_admin(&new.owner, "create")?;
        let (hsm, label) = self.hsm_key(&new.uid)?;
        for uid in [new.uid.as_str(), public_uid] {
            if self.store.uid_used(uid).await? {
                return Err(KmsError::Database(format!(
                    "{uid}: one or more objects already exist"
                )));
            }
        }
        let spki = hsm.create_key_pair(&label, kind)?;
        let mut object = new.object();
        object.wrapping = Wrapping::Resident;
        object.length_bits = kind.bits();
        Ok((object, spki))
    }

    /// An `hsm::<slot>::<label>` key: generated inside the HSM, never extractable.
    pub async fn new_key_in_hsm(&self, new: NewKey) -> Result<ManagedObject, KmsError> {
        self.require_hsm_admin(&new.owner, "create")?;
        let (hsm, label) = self.hsm_key(&new.uid)?;
        if self.store.uid_used(&new.uid).await? {
            return Err(match self.store.load(&new.uid).await? {
                Some(_) => {
                    KmsError::Database(format!("{}: one or more objects already exist", new.uid))
                }
                None => crate::store::StoreError::Retired(new.uid).into(),
            });
        }
        hsm.create_key(&label, u64::try_from(new.length_bits).unwrap_or(256))?;
        let mut object = new.object();
        object.wrapping = Wrapping::Resident;
        Ok(object)
    }
}
