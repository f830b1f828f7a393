//! Create: a new symmetric key, generated in software (wrapped at rest) or inside the HSM.

use crate::error::KmsError;
use crate::kmip::attributes::{self, Purpose, RequestAttributes};
use crate::kmip::build::{enumeration, structure, text};
use crate::kmip::creation::{DEFAULT_CREATE_MASK, HSM_PREFIX, NewKey, check_user_tags, new_uid};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::ttlv::Ttlv;
use crate::object::{Algorithm, ObjectType, WrappedBy, now};

pub struct Request<'a> {
    pub object_type: ObjectType,
    pub attributes: RequestAttributes<'a>,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "Create")?;
        let object_type = f
            .enumeration("ObjectType")?
            .map(attributes::object_type)
            .transpose()?;
        let attributes = attributes::parse(f.node("Attributes")?, "Create", Purpose::New)?;
        f.finish()?;
        let object_type = match (object_type, attributes.object_type) {
            (Some(a), Some(b)) if a != b => {
                return Err(KmsError::InvalidRequest(format!(
                    "Create: ObjectType {} and Attributes.ObjectType {} differ",
                    a.name(),
                    b.name()
                )));
            }
            (a, b) => a.or(b).unwrap_or(ObjectType::SymmetricKey),
        };
        Ok(Self {
            object_type,
            attributes,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let Request {
        object_type,
        attributes: a,
    } = Request::parse(node)?;
    if object_type != ObjectType::SymmetricKey {
        return Err(unsupported(
            "Create",
            format!("ObjectType {}", object_type.name()),
        ));
    }
    if let Some(alg) = a.algorithm {
        if Algorithm::parse(alg).is_none() {
            return Err(unsupported(
                "Create",
                format!("CryptographicAlgorithm {alg}"),
            ));
        }
    }
    if let Some(format) = a.key_format {
        // Both name the same stored material; they only change how Get returns it.
        if !matches!(format, "Raw" | "TransparentSymmetricKey") {
            return Err(unsupported("Create", format!("KeyFormatType {format}")));
        }
    }
    // Stored "wrapped by" that key: the creator must be able to wrap with it.
    let wrapped_by = match a.wrapping_key_id {
        Some(id) => Some(WrappedBy {
            uid: kms.check_may_wrap(user, id).await?,
        }),
        None => None,
    };
    let bits = a.length.unwrap_or(256);
    if !Algorithm::Aes.lengths().contains(&bits) {
        return Err(KmsError::InvalidRequest(format!(
            "Create: AES key length {bits} must be 128, 192 or 256"
        )));
    }
    let tags = a.tags.unwrap_or_default();
    check_user_tags(&tags)?;
    let new = NewKey {
        owner: user.to_owned(),
        uid: new_uid(a.uid)?,
        length_bits: bits,
        usage_mask: a.usage_mask.unwrap_or(DEFAULT_CREATE_MASK),
        // Create resets an activation date in the past to the creation time.
        activation: a.activation_date.map(|d| d.max(now())),
        tags,
        sensitive: a.sensitive.unwrap_or(false),
    };
    let object = if new.uid.starts_with(HSM_PREFIX) {
        if wrapped_by.is_some() {
            return Err(unsupported("Create", "an HSM key wrapped by another key"));
        }
        kms.new_key_in_hsm(new).await?
    } else {
        let key = crate::crypto::random(usize::try_from(bits / 8).unwrap_or(32))?;
        let mut object = kms.new_key(new, &key)?;
        object.meta.wrapped_by = wrapped_by;
        object
    };
    if let Err(e) = kms.store.insert(&object).await {
        // A key generated in the HSM for a uid the store refused must not stay there.
        if object.is_resident() {
            if let Ok((hsm, label)) = kms.hsm_key(&object.uid) {
                let _ = hsm.destroy_key(&label);
            }
        }
        return Err(e.into());
    }
    Ok(Done::new(
        structure(
            "CreateResponse",
            vec![
                enumeration("ObjectType", ObjectType::SymmetricKey.name()),
                text("UniqueIdentifier", &object.uid),
            ],
        ),
        object.uid,
    ))
}
