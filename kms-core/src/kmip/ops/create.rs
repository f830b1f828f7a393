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
    // Create makes keys and secret data; other objects are imported or registered.
    let (algorithm, data_type, bits) = match object_type {
        ObjectType::SymmetricKey => {
            let algorithm = match a.algorithm {
                None => Algorithm::Aes,
                Some(alg) => Algorithm::parse_symmetric(alg).ok_or_else(|| {
                    unsupported("Create", format!("CryptographicAlgorithm {alg}"))
                })?,
            };
            if let Some(format) = a.key_format {
                // Both name the same stored material; they only change how Get returns it.
                if !matches!(format, "Raw" | "TransparentSymmetricKey") {
                    return Err(unsupported("Create", format!("KeyFormatType {format}")));
                }
            }
            let bits = a.length.unwrap_or(256);
            if !algorithm.accepts_length(bits) {
                return Err(KmsError::InvalidRequest(format!(
                    "Create: {} key length {bits} must be {}",
                    algorithm.name(),
                    algorithm.lengths_text()
                )));
            }
            (Some(algorithm), None, bits)
        }
        ObjectType::SecretData => {
            if let Some(alg) = a.algorithm {
                return Err(KmsError::InvalidRequest(format!(
                    "Create: SecretData has no CryptographicAlgorithm (got {alg})"
                )));
            }
            if let Some(format) = a.key_format.filter(|f| *f != "Raw") {
                return Err(unsupported("Create", format!("KeyFormatType {format}")));
            }
            // A random seed, 256 bits unless asked otherwise (at most 4096).
            let bits = a.length.unwrap_or(256);
            if !(8..=4096).contains(&bits) || bits % 8 != 0 {
                return Err(KmsError::InvalidRequest(format!(
                    "Create: a SecretData seed of {bits} bits: give a multiple of 8 up to 4096"
                )));
            }
            (None, Some("Seed".to_owned()), bits)
        }
        other => {
            return Err(unsupported(
                "Create",
                format!("ObjectType {}", other.name()),
            ));
        }
    };
    // Stored "wrapped by" that key: the creator must be able to wrap with it.
    let wrapped_by = match a.wrapping_key_id {
        Some(id) => Some(WrappedBy {
            uid: kms.check_may_wrap(user, id).await?,
        }),
        None => None,
    };
    let tags = a.tags.unwrap_or_default();
    check_user_tags(&tags)?;
    let new = NewKey {
        object_type,
        algorithm,
        data_type,
        owner: user.to_owned(),
        uid: new_uid(a.uid)?,
        length_bits: bits,
        usage_mask: a.usage_mask.unwrap_or(DEFAULT_CREATE_MASK),
        // Create resets an activation date in the past to the creation time.
        activation: a.activation_date.map(|d| d.max(now())),
        tags,
        sensitive: a.sensitive.unwrap_or(false),
    };
    let mut object = if new.uid.starts_with(HSM_PREFIX) {
        if wrapped_by.is_some() || algorithm != Some(Algorithm::Aes) {
            return Err(unsupported(
                "Create",
                "in the HSM, anything but a plain AES key",
            ));
        }
        kms.new_key_in_hsm(new).await?
    } else {
        let material = crate::crypto::random(usize::try_from(bits / 8).unwrap_or(32))?;
        kms.new_key(new, &material)?
    };
    object.meta.wrapped_by = wrapped_by;
    object.meta.names = a.names;
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
                enumeration("ObjectType", object_type.name()),
                text("UniqueIdentifier", &object.uid),
            ],
        ),
        object.uid,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{create, fails, field, kms, leaf, run};

    fn create_request(attributes: Vec<serde_json::Value>) -> serde_json::Value {
        json!({"tag": "Create", "value": [
            leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
            {"tag": "Attributes", "value": attributes},
        ]})
    }

    #[tokio::test]
    async fn creates_keys_and_refuses_what_it_cannot_make() {
        let kms = kms().await;
        let uid = create(&kms, "alice", vec![]).await;
        let o = kms.store.load(&uid).await.ok().flatten();
        assert_eq!(
            o.map(|o| (o.owner, o.length_bits)),
            Some(("alice".into(), 256))
        );
        let des = create_request(vec![leaf(
            "CryptographicAlgorithm",
            "Enumeration",
            json!("DES"),
        )]);
        assert_eq!(
            fails(&kms, "alice", des).await,
            "Feature_Not_Supported: Create: CryptographicAlgorithm DES is not supported by this server"
        );
        let long = create_request(vec![leaf("CryptographicLength", "Integer", json!(512))]);
        assert!(
            fails(&kms, "alice", long)
                .await
                .contains("must be 128, 192 or 256")
        );
        let secret = json!({"tag": "Create", "value": [
            leaf("ObjectType", "Enumeration", json!("SecretData")),
        ]});
        let seed = run(&kms, "alice", secret)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(field(&seed, "ObjectType"), Some(&json!("SecretData")));
        let opaque = json!({"tag": "Create", "value": [
            leaf("ObjectType", "Enumeration", json!("OpaqueObject")),
        ]});
        assert!(
            fails(&kms, "alice", opaque)
                .await
                .contains("ObjectType OpaqueObject")
        );
        // The same uid twice: the second is refused.
        let named = create_request(vec![leaf("UniqueIdentifier", "TextString", json!("k1"))]);
        let first = run(&kms, "alice", named.clone()).await.ok();
        assert_eq!(
            first.as_ref().and_then(|r| field(r, "UniqueIdentifier")),
            Some(&json!("k1"))
        );
        assert!(fails(&kms, "alice", named).await.contains("already exist"));
    }

    #[tokio::test]
    async fn a_wrapping_key_must_be_one_the_creator_may_use() {
        let kms = kms().await;
        let kek = create(&kms, "alice", vec![]).await;
        let wrapped_by = json!({"tag": "Attribute", "value": [
            leaf("VendorIdentification", "TextString", json!("cosmian")),
            leaf("AttributeName", "TextString", json!("wrapping_key_id")),
            leaf("AttributeValue", "TextString", json!(kek)),
        ]});
        let text = fails(&kms, "bob", create_request(vec![wrapped_by.clone()])).await;
        assert!(text.starts_with("Access denied"), "{text}");
        let uid = create(&kms, "alice", vec![wrapped_by]).await;
        let o = kms.store.load(&uid).await.ok().flatten();
        assert_eq!(o.and_then(|o| o.meta.wrapped_by).map(|w| w.uid), Some(kek));
    }
}
